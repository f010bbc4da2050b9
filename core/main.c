/* callvoxd: the voicemail and unified-messaging daemon. */
#include <stdio.h>
#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/lsan_interface.h>
#endif

#include "cvx/cluster.h"
#include "cvx/daemon.h"
#include "cvx/license.h"
#include "cvx/link.h"
#include "ctl/ctl.h"
#include "cdr_impl.h"
#include "cvx/store.h"
#include "media/media_impl.h"

int main(int argc, char **argv)
{
    /* The control socket: its [control] section, its start/stop hooks, the core's commands. */
    if (cvx__ctl_setup() != 0) {
        fprintf(stderr, "callvoxd: cannot set up the control socket\n");
        return 1;
    }
    /* The media core: its [media] section, shutdown hook and commands. */
    if (cvx__media_setup() != 0) {
        fprintf(stderr, "callvoxd: cannot set up the media core\n");
        return 1;
    }
    /* Call records (roles call and all): the [cdr] section and the writer thread. */
    if (cvx__cdr_setup() != 0) {
        fprintf(stderr, "callvoxd: cannot set up call records\n");
        return 1;
    }
    /* The licence (roles system and all): its [license] section, boot check and commands;
     * before the store, so that a refused licence stops the start before the store opens. */
    if (cvx_license_register() != 0) {
        fprintf(stderr, "callvoxd: cannot set up the licence\n");
        return 1;
    }
    /* The message store (roles system and all): its [store] section, hooks and commands. */
    if (cvx_store_register() != 0) {
        fprintf(stderr, "callvoxd: cannot set up the message store\n");
        return 1;
    }
    /* The call-server <-> system-server link: its [link] section, hooks and commands. */
    if (cvx_link_register() != 0) {
        fprintf(stderr, "callvoxd: cannot set up the link\n");
        return 1;
    }
    /* The system servers' cluster (roles system and witness): [cluster], [member:NAME],
     * Raft over TLS, "show cluster". */
    if (cvx_cluster_register() != 0) {
        fprintf(stderr, "callvoxd: cannot set up the cluster\n");
        return 1;
    }
    int status = cvx_daemon_main(argc, argv);
#ifdef __SANITIZE_ADDRESS__
    /* Sanitizer builds: look for leaks now, while every thread is idle.  At exit libuv's
     * destructor joins its pool threads, and LeakSanitizer's tracer sometimes crashes on
     * threads that are exiting ("Tracer caught signal 11", google/sanitizers#1353); the
     * end-of-process check does not run again after this one. */
    __lsan_do_leak_check();
#endif
    return status;
}
