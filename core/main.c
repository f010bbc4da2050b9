/* callvoxd: the voicemail and unified-messaging daemon. */
#include "cvx/daemon.h"

int main(int argc, char **argv)
{
    return cvx_daemon_main(argc, argv);
}
