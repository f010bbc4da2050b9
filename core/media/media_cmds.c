/*
 * The media core in the daemon: its [media] section, its shutdown hook and its shell commands
 * ("show media", "show calls media").  cvx__media_setup() is called by callvoxd's main()
 * before the daemon starts; tests that use the media core without a daemon get the defaults.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

#include "cvx/chan.h"
#include "cvx/cmd.h"
#include "cvx/daemon.h"
#include "cvx/driver.h"
#include "cvx/error.h"
#include "cvx/log.h"
#include "cvx/media.h"
#include "cvx/rtp.h"
#include "media/media_impl.h"

cvx__media_conf_t cvx__media_conf = {-42, 300, 0};

static const char *const priorities[] = {"normal", "high", "realtime", NULL};

static const cvx_option_t media_options[] = {
    {"silence_threshold", CVX_OPT_INT, offsetof(cvx__media_conf_t, silence_threshold_dbm0), "-42",
     -80, -10, NULL, CVX_OPT_RELOADABLE,
     "Level in dBm0 below which recorded audio counts as silence (a call flow may give its "
     "own)."},
    {"silence_hangover", CVX_OPT_DURATION, offsetof(cvx__media_conf_t, silence_hangover_ms),
     "300ms", 0, 10000, NULL, CVX_OPT_RELOADABLE,
     "How long audio must stay below the threshold before silence starts to count towards a "
     "recording's silence timeout (bridges the pauses inside speech)."},
    {"loop_priority", CVX_OPT_ENUM, offsetof(cvx__media_conf_t, loop_priority), "normal", 0, 0,
     priorities, 0,
     "Scheduling of the loop thread, which sends every call's RTP: normal; high (nice -10); "
     "realtime (SCHED_RR priority 10: the loop runs before ordinary processes, such as a "
     "busy neighbour on the same host).  Set at start, as root; other threads keep normal "
     "scheduling."},
    CVX_OPTIONS_END,
};

static const cvx_section_def_t media_section = {
    "media", 0, media_options, sizeof(cvx__media_conf_t),
    "The media core: recording defaults (silence detection)."};

/* --- show media ------------------------------------------------------------------------------ */

static const double quantiles[] = {0.5, 0.9, 0.99, 0.999};
static const char *const quantile_names[] = {"p50", "p90", "p99", "p99.9"};

/* Prints one lateness distribution (the media clock's histogram format). */
static void show_dist(cvx_cmd_req_t *req, const char *key, const char *title,
                      const cvx_mclock_stats_t *s, uint64_t count)
{
    static const uint64_t edges_us[] = {10, 50, 100, 250, 500, 1000, 2000, 5000};
    static const char *const edge_names[] = {"<10us", "<50us", "<100us", "<250us", "<500us",
                                             "<1ms",  "<2ms",  "<5ms",   ">=5ms"};
    uint64_t b[9] = {0};
    for (unsigned i = 0; i < CVX_MCLOCK_HIST; i++) {
        uint64_t lo_us = (uint64_t)i * 10; /* bucket i holds [10i, 10i + 10) us */
        unsigned k = 0;
        while (k < 8 && lo_us >= edges_us[k])
            k++;
        b[k] += s->hist[i];
    }
    cvx_cmd_printf(req, "%s: %llu measured, max %.3f ms\n ", title, (unsigned long long)count,
                   (double)s->late_max_ns / 1e6);
    cvx_cmd_json_object(req, key);
    cvx_cmd_json_uint(req, "count", count);
    cvx_cmd_json_double(req, "max_ms", (double)s->late_max_ns / 1e6);
    for (unsigned i = 0; i < 4; i++) {
        double ms = (double)cvx_mclock_quantile(s, quantiles[i]) / 1e6;
        cvx_cmd_printf(req, " %s %.3f ms", quantile_names[i], ms);
        char k[16];
        snprintf(k, sizeof(k), "%s_ms", quantile_names[i]);
        cvx_cmd_json_double(req, k, ms);
    }
    cvx_cmd_printf(req, "\n ");
    cvx_cmd_json_object(req, "histogram");
    for (unsigned k = 0; k < 9; k++) {
        cvx_cmd_printf(req, " %s %llu", edge_names[k], (unsigned long long)b[k]);
        cvx_cmd_json_uint(req, edge_names[k], b[k]);
    }
    cvx_cmd_json_end(req);
    cvx_cmd_json_end(req);
    cvx_cmd_printf(req, "\n");
}

static int cmd_show_media(cvx_cmd_req_t *req)
{
    cvx_mclock_t *c = cvx_media_clock_peek();
    if (c != NULL) {
        cvx_cmd_printf(req,
                       "media clock: period %.0f ms, %u slots, %u subscribers, %llu wake-ups, "
                       "%llu ticks, %llu periods skipped (overruns)\n",
                       (double)c->period_ns / 1e6, c->nslots, c->nsubs,
                       (unsigned long long)c->stats.wakeups, (unsigned long long)c->stats.ticks,
                       (unsigned long long)c->stats.overruns);
        cvx_cmd_json_object(req, "clock");
        cvx_cmd_json_uint(req, "period_ms", c->period_ns / 1000000);
        cvx_cmd_json_uint(req, "slots", c->nslots);
        cvx_cmd_json_uint(req, "subscribers", c->nsubs);
        cvx_cmd_json_uint(req, "wakeups", c->stats.wakeups);
        cvx_cmd_json_uint(req, "ticks", c->stats.ticks);
        cvx_cmd_json_uint(req, "overruns", c->stats.overruns);
        cvx_cmd_json_end(req);
        show_dist(req, "tick_lateness", "tick lateness (callback start - deadline)", &c->stats,
                  c->stats.ticks);
    } else {
        cvx_cmd_printf(req, "media clock: not started (no media yet)\n");
    }
    cvx_mclock_stats_t rs;
    cvx_rtp_send_lateness(&rs);
    show_dist(req, "rtp_send_lateness", "RTP send lateness (packet sent - deadline)", &rs,
              rs.ticks);
    cvx_cmd_printf(req, "RTP sessions: %u\n", cvx_rtp_count());
    cvx_cmd_json_uint(req, "rtp_sessions", cvx_rtp_count());
    size_t files, bytes;
    cvx_audio_cache_stats(&files, &bytes);
    cvx_cmd_printf(req, "prompt cache: %zu files, %.1f KiB\n", files, (double)bytes / 1024.0);
    cvx_cmd_json_uint(req, "prompt_files", files);
    cvx_cmd_json_uint(req, "prompt_bytes", bytes);

    const cvx_watchdog_t *wd = cvx_daemon_watchdog();
    if (wd != NULL) {
        static const char *const names[8] = {"<1ms",  "<2ms",  "<5ms",   "<10ms",
                                             "<20ms", "<50ms", "<100ms", ">=100ms"};
        cvx_cmd_printf(req,
                       "loop watchdog: %llu iterations, %llu stalls over %.1f ms, longest busy "
                       "%.2f ms\n ",
                       (unsigned long long)wd->iterations, (unsigned long long)wd->stalls,
                       (double)wd->threshold_ns / 1e6, (double)wd->busy_max_ns / 1e6);
        cvx_cmd_json_object(req, "watchdog");
        cvx_cmd_json_uint(req, "iterations", wd->iterations);
        cvx_cmd_json_uint(req, "stalls", wd->stalls);
        cvx_cmd_json_double(req, "busy_max_ms", (double)wd->busy_max_ns / 1e6);
        cvx_cmd_json_object(req, "busy_histogram");
        for (int i = 0; i < 8; i++) {
            cvx_cmd_printf(req, " %s %llu", names[i], (unsigned long long)wd->hist[i]);
            cvx_cmd_json_uint(req, names[i], wd->hist[i]);
        }
        cvx_cmd_json_end(req);
        cvx_cmd_printf(req, "\n");
        cvx_cmd_json_array(req, "worst");
        for (int i = 0; i < CVX_WATCHDOG_WORST && wd->worst[i].busy_ns > 0; i++) {
            cvx_cmd_printf(req, "  stall %.2f ms, mostly %s (%.2f ms)\n",
                           (double)wd->worst[i].busy_ns / 1e6, wd->worst[i].what,
                           (double)wd->worst[i].section_ns / 1e6);
            cvx_cmd_json_object(req, NULL);
            cvx_cmd_json_double(req, "busy_ms", (double)wd->worst[i].busy_ns / 1e6);
            cvx_cmd_json_str(req, "what", wd->worst[i].what);
            cvx_cmd_json_double(req, "section_ms", (double)wd->worst[i].section_ns / 1e6);
            cvx_cmd_json_end(req);
        }
        cvx_cmd_json_end(req);
        cvx_cmd_json_end(req);
    }
    return 0;
}

/* --- show calls media ------------------------------------------------------------------------ */

static int media_row(cvx_chan_t *chan, void *arg)
{
    cvx_cmd_req_t *req = arg;
    cvx_rtp_t *rtp = cvx_rtp_of_chan(chan);
    char port[16] = "-", remote[80] = "-", in[24] = "0", out[24] = "0", lost[24] = "0",
         jit[24] = "0", late[24] = "0", bad[24] = "0", foreign[24] = "0";
    if (rtp != NULL) {
        cvx_rtp_stats_t st;
        cvx_rtp_get_stats(rtp, &st);
        snprintf(port, sizeof(port), "%u", cvx_rtp_local_port(rtp));
        cvx__rtp_remote_str(rtp, remote, sizeof(remote));
        snprintf(in, sizeof(in), "%llu", (unsigned long long)st.packets_in);
        snprintf(out, sizeof(out), "%llu", (unsigned long long)st.packets_out);
        snprintf(lost, sizeof(lost), "%llu", (unsigned long long)st.lost);
        snprintf(jit, sizeof(jit), "%.2f", st.jitter_ms);
        snprintf(late, sizeof(late), "%.3f", (double)st.late_p99_ns / 1e6);
        snprintf(bad, sizeof(bad), "%llu", (unsigned long long)st.malformed);
        snprintf(foreign, sizeof(foreign), "%llu", (unsigned long long)st.foreign);
    }
    const char *cells[] = {cvx_chan_id(chan),
                           cvx_drv_inst_name(cvx_chan_inst(chan)),
                           port,
                           remote,
                           in,
                           out,
                           lost,
                           jit,
                           late,
                           bad,
                           foreign,
                           NULL};
    cvx_cmd_table_row(req, cells);
    return 0;
}

static int cmd_show_calls_media(cvx_cmd_req_t *req)
{
    static const char *const cols[] = {"id",           "instance",     "port",     "remote",
                                       "packets_in#",  "packets_out#", "lost#",    "jitter_ms#",
                                       "late_p99_ms#", "malformed#",   "foreign#", NULL};
    cvx_cmd_table_begin(req, "calls", cols);
    cvx_chan_foreach(media_row, req);
    cvx_cmd_table_end(req);
    return 0;
}

static const cvx_cmd_t media_cmds[] = {
    {"show media",
     {{0}},
     CVX_CMD_READONLY,
     "Show the media clock, RTP send lateness and the loop watchdog",
     "Prints the media clock (period, slots, subscribers, skipped periods) with the "
     "distribution of its tick lateness, the distribution of RTP send lateness (when each "
     "packet left against its deadline), the number of RTP sessions, the prompt cache, and "
     "the loop watchdog: iterations, stalls over the threshold, the busy-time histogram and "
     "the worst stalls with what the loop was doing.",
     cmd_show_media,
     NULL},
    {"show calls media",
     {{0}},
     CVX_CMD_READONLY,
     "List calls in progress with their RTP figures",
     "One line per call: its id and driver instance, the local RTP port and the remote media "
     "address (the latched source once media has arrived), packets received and sent, "
     "packets lost, interarrival jitter (RFC 3550) in ms, the 99th percentile of the call's "
     "RTP send lateness in ms, and packets dropped as malformed or as coming from another "
     "source than the latched one.  Calls without RTP (null, analog) show dashes and zeros.",
     cmd_show_calls_media,
     NULL},
    CVX_CMDS_END,
};

/* --- the daemon's life -------------------------------------------------------------------------
 */

/* Applies loop_priority to the calling thread: the loop thread, at start, still as root. */
static int media_start(uv_loop_t *loop)
{
    (void)loop;
    int prio = cvx__media_conf.loop_priority;
    if (prio == 1) {
        /* On Linux, PRIO_PROCESS with 0 applies to the calling thread only. */
        if (setpriority(PRIO_PROCESS, 0, -10) != 0)
            cvx_warn("media: cannot raise the loop thread's priority (nice -10): %s",
                     strerror(errno));
        else
            cvx_info("media: loop thread runs at nice -10");
    } else if (prio == 2) {
        struct sched_param sp = {.sched_priority = 10};
        int rc = pthread_setschedparam(pthread_self(), SCHED_RR, &sp);
        if (rc != 0)
            cvx_warn("media: cannot make the loop thread real-time (SCHED_RR 10): %s",
                     strerror(rc));
        else
            cvx_info("media: loop thread runs real-time (SCHED_RR priority 10)");
    }
    return 0;
}

static void media_stop(void)
{
    cvx_audio_cache_clear();
}

static const cvx_daemon_hooks_t media_hooks = {"media", CVX_ROLE_CALL, media_start, media_stop,
                                               NULL};

int cvx__media_setup(void)
{
    int rc = cvx_daemon_add_section(&media_section, &cvx__media_conf);
    if (rc == 0)
        rc = cvx_daemon_add_hooks(&media_hooks);
    if (rc == 0)
        rc = cvx_cmd_register(media_cmds);
    return rc;
}
