/*
 * license_usb: proves the licence's key hash with a USB dongle (libusb), at boot only.
 *
 * The dongle is found by the vendor and product id of [license] usb_vendor/usb_product.  Its
 * secret is read with a vendor control transfer (IN, request 0x01, up to 64 bytes); a dongle
 * that stalls that request gives its serial-number string instead.  The key hash is
 * cvx_license_hash_secret(secret).  The USB work runs on the libuv thread pool, never on the
 * loop.  Once booted, removing the dongle changes nothing until the next start.
 *
 * The USB access sits behind usb_ops_t so tests can simulate a dongle: test builds
 * (CVX_LICENSE_TEST_HOOKS) use the simulation when CVX_LICENSE_USB_SIM names a file holding
 * "absent", "timeout" or "secret <text>"; otherwise, and always in release builds, libusb.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libusb.h>
#include <sodium.h>
#include <uv.h>

#include "cvx/error.h"
#include "cvx/license.h"
#include "cvx/log.h"
#include "cvx/module.h"

#define USB_SECRET_MAX 64
#define USB_REQ_SECRET 0x01

/* The seam: everything that touches a dongle.  Runs on a thread-pool thread; err gets one
 * line on failure (CVX_ENOTFOUND: no dongle, CVX_ETIMEOUT, CVX_EIO). */
typedef struct usb_ops {
    int (*read_secret)(unsigned vid, unsigned pid, unsigned timeout_ms, unsigned char *buf,
                       size_t *len, char *err, size_t errlen);
} usb_ops_t;

/* --- libusb ---------------------------------------------------------------------------- */

static int libusb_read_secret(unsigned vid, unsigned pid, unsigned timeout_ms, unsigned char *buf,
                              size_t *len, char *err, size_t errlen)
{
    libusb_context *ctx = NULL;
    int r = libusb_init(&ctx);
    if (r != 0) {
        snprintf(err, errlen, "no dongle found (USB is not available: %s)", libusb_strerror(r));
        return CVX_ENOTFOUND;
    }
    libusb_device **list = NULL;
    ssize_t n = libusb_get_device_list(ctx, &list);
    libusb_device *found = NULL;
    struct libusb_device_descriptor desc;
    for (ssize_t i = 0; i < n && found == NULL; i++)
        if (libusb_get_device_descriptor(list[i], &desc) == 0 && desc.idVendor == vid &&
            desc.idProduct == pid)
            found = list[i];
    int rc = 0;
    libusb_device_handle *h = NULL;
    if (found == NULL) {
        snprintf(err, errlen, "no dongle found (USB vendor 0x%04x, product 0x%04x)", vid, pid);
        rc = CVX_ENOTFOUND;
    } else if ((r = libusb_open(found, &h)) != 0) {
        snprintf(err, errlen, "the dongle cannot be opened: %s", libusb_strerror(r));
        rc = CVX_EIO;
    } else {
        r = libusb_control_transfer(
            h, LIBUSB_ENDPOINT_IN | LIBUSB_REQUEST_TYPE_VENDOR | LIBUSB_RECIPIENT_DEVICE,
            USB_REQ_SECRET, 0, 0, buf, USB_SECRET_MAX, timeout_ms);
        if (r == LIBUSB_ERROR_PIPE && desc.iSerialNumber != 0)
            r = libusb_get_string_descriptor_ascii(h, desc.iSerialNumber, buf, USB_SECRET_MAX);
        if (r == LIBUSB_ERROR_TIMEOUT) {
            snprintf(err, errlen, "the dongle did not answer within %u ms", timeout_ms);
            rc = CVX_ETIMEOUT;
        } else if (r <= 0) {
            snprintf(err, errlen, "the dongle gave no secret: %s",
                     r == 0 ? "empty answer" : libusb_strerror(r));
            rc = CVX_EIO;
        } else {
            *len = (size_t)r;
        }
        libusb_close(h);
    }
    if (list != NULL)
        libusb_free_device_list(list, 1);
    libusb_exit(ctx);
    return rc;
}

static const usb_ops_t libusb_ops = {libusb_read_secret};

#ifdef CVX_LICENSE_TEST_HOOKS
/* --- simulated dongle (test builds) ---------------------------------------------------- */

static int sim_read_secret(unsigned vid, unsigned pid, unsigned timeout_ms, unsigned char *buf,
                           size_t *len, char *err, size_t errlen)
{
    char line[USB_SECRET_MAX + 16] = "";
    FILE *f = fopen(getenv("CVX_LICENSE_USB_SIM"), "r");
    if (f != NULL) {
        if (fgets(line, sizeof(line), f) == NULL)
            line[0] = '\0';
        fclose(f);
    }
    line[strcspn(line, "\r\n")] = '\0';
    if (strncmp(line, "secret ", 7) == 0 && line[7] != '\0') {
        *len = strlen(line + 7);
        memcpy(buf, line + 7, *len);
        return 0;
    }
    if (strcmp(line, "timeout") == 0) {
        snprintf(err, errlen, "the dongle did not answer within %u ms", timeout_ms);
        return CVX_ETIMEOUT;
    }
    snprintf(err, errlen, "no dongle found (USB vendor 0x%04x, product 0x%04x)", vid, pid);
    return CVX_ENOTFOUND;
}

static const usb_ops_t sim_ops = {sim_read_secret};
#endif

/* --- the provider ---------------------------------------------------------------------- */

typedef struct usb_proof {
    uv_work_t work;
    const usb_ops_t *ops;
    unsigned vid, pid, timeout_ms;
    int rc;
    char hash[CVX_LICENSE_HASH_HEX];
    char err[192];
    cvx_license_proof_cb done;
} usb_proof_t;

static uv_loop_t *usb_loop;
static char usb_found[200] = "not looked for yet";
static int usb_pending; /* a proof on the thread pool */

static void usb_work(uv_work_t *w)
{
    usb_proof_t *p = w->data;
    unsigned char secret[USB_SECRET_MAX];
    size_t len = 0;
    p->rc =
        p->ops->read_secret(p->vid, p->pid, p->timeout_ms, secret, &len, p->err, sizeof(p->err));
    if (p->rc == 0)
        cvx_license_hash_secret(secret, len, p->hash);
    sodium_memzero(secret, sizeof(secret));
}

static void usb_after(uv_work_t *w, int status)
{
    usb_proof_t *p = w->data;
    usb_pending = 0;
    if (status == UV_ECANCELED) {
        free(p);
        return;
    }
    if (p->rc == 0) {
        snprintf(usb_found, sizeof(usb_found), "vendor 0x%04x product 0x%04x, key hash %.16s...",
                 p->vid, p->pid, p->hash);
        p->done(0, p->hash, "dongle present at boot");
    } else {
        snprintf(usb_found, sizeof(usb_found), "%s", p->err);
        p->done(p->rc, NULL, p->err);
    }
    free(p);
}

static int usb_prove(const cvx_license_t *lic, cvx_license_proof_cb done)
{
    (void)lic;
    const cvx_license_conf_t *conf = cvx_license_conf();
    usb_proof_t *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return CVX_ENOMEM;
    p->ops = &libusb_ops;
#ifdef CVX_LICENSE_TEST_HOOKS
    const char *sim = getenv("CVX_LICENSE_USB_SIM");
    if (sim != NULL && *sim != '\0')
        p->ops = &sim_ops;
#endif
    p->vid = (unsigned)conf->usb_vendor;
    p->pid = (unsigned)conf->usb_product;
    p->timeout_ms = (unsigned)conf->usb_timeout_ms;
    p->done = done;
    p->work.data = p;
    snprintf(usb_found, sizeof(usb_found), "looking for the dongle");
    int rc = uv_queue_work(usb_loop, &p->work, usb_work, usb_after);
    if (rc != 0) {
        free(p);
        return CVX_EIO;
    }
    usb_pending = 1;
    return 0;
}

static void usb_describe(void (*line)(void *arg, const char *key, const char *value), void *arg)
{
    line(arg, "dongle", usb_found);
}

static const cvx_license_provider_t usb_provider = {
    .size = sizeof(cvx_license_provider_t),
    .name = "usb",
    .prove = usb_prove,
    .describe = usb_describe,
};

static int usb_load(cvx_module_env_t *env)
{
    usb_loop = env->loop;
    return cvx_license_provider_register(&usb_provider);
}

static void usb_unload(void)
{
    cvx_license_provider_unregister(&usb_provider);
}

static const cvx_module_t license_usb_module = {
    .abi_major = CVX_MODULE_ABI_MAJOR,
    .abi_minor = CVX_MODULE_ABI_MINOR,
    .size = sizeof(cvx_module_t),
    .signature = CVX_MODULE_SIGNATURE,
    .name = "license_usb",
    .version = "1.0",
    .description = "licence proof by USB dongle (libusb)",
    .kind = CVX_MODULE_SERVICE,
    .roles = CVX_ROLE_SYSTEM,
    .load = usb_load,
    .unload = usb_unload,
};

CVX_MODULE_DEFINE(license_usb_module)
