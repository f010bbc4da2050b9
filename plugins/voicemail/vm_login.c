/*
 * The subscriber conversation: not written yet.  Callers who reach it hear that it is not
 * available and are disconnected.
 */
#include "vm.h"

void vm_login_start(vm_call_t *c, const char *mailbox)
{
    (void)mailbox;
    vm_list_t l = {0};
    vm_add(&l, "sorry");
    vm_add(&l, "goodbye");
    vm_play_and_hangup(c, &l);
}
