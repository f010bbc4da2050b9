/*
 * Between the licence (license.c) and its cluster-wide port counting (license_ports.c).
 * Loop thread only.
 */
#ifndef CVX_LICENSE_IMPL_H
#define CVX_LICENSE_IMPL_H

#include <stdint.h>

#include "cvx/cmd.h"

/* --- license.c ------------------------------------------------------------------------- */

/* The licence's ports for the whole cluster (demo mode's without a licence). */
uint32_t cvx__license_port_limit(void);
/* 1 when ports are enforced (a licence in force, or demo mode; not while proving). */
int cvx__license_ports_enforced(void);
/* "demo", "valid", "not proven", ... */
const char *cvx__license_state_name(void);
/* Demo mode's ports (raised by CVX_LICENSE_TEST_DEMO_PORTS in test builds). */
uint32_t cvx__license_demo_ports(void);
/* Calls in progress in this process. */
unsigned cvx__license_local_calls(void);
/* The licence's features (CVX_LIC_*; every one in demo mode). */
unsigned cvx__license_features(void);

/* --- license_ports.c ------------------------------------------------------------------- */

/* Registers the licence service on the link: system side in roles system and all, call
 * side in role call. */
int cvx__license_ports_start(void);
void cvx__license_ports_stop(void);
/* System side: calls in progress on the call servers, as they last reported them. */
uint32_t cvx__license_remote_calls(void);
/* Call side: 1 when one more call fits the ports the system server granted (demo mode's
 * before the first grant: the call server keeps answering without its system server). */
int cvx__license_grant_admits(unsigned ncalls);
/* Either side: the local count of calls changed. */
void cvx__license_calls_changed(unsigned ncalls);
/* System side: the licence's state or whether messages are accepted changed. */
void cvx__license_state_changed(void);
/* Call side: what the system server last said of the licence. */
int cvx__license_remote_accepting(const char **why);
/* Call side: 1 and the features of the system server's licence once it told them, else 0;
 * serial gets the licence's serial. */
int cvx__license_grant_features(unsigned *features, const char **serial);
/* Call side: the lines of "show license". */
void cvx__license_ports_describe(cvx_cmd_req_t *req, unsigned ncalls, uint64_t refused,
                                 uint64_t peak);

#endif
