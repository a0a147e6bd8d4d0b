/* RFC 5321 address and domain checks (see addr.h). */
#include "addr.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "mxc_err.h"

static int fail(char *out, size_t outlen)
{
    if (outlen)
        out[0] = '\0';
    return MXC_EINVAL;
}

int addr_domain_canon(const char *in, size_t len, char *out, size_t outlen)
{
    size_t label = 0;

    if (len > 0 && in[len - 1] == '.')
        len--;
    if (len == 0 || len > ADDR_MAX_DOMAIN || len + 1 > outlen)
        return fail(out, outlen);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c == '.') {
            /* Empty labels and labels that start or end with '-' are not host names. */
            if (label == 0 || in[i - 1] == '-')
                return fail(out, outlen);
            label = 0;
        } else if (isalnum(c) || c == '-') {
            if ((label == 0 && c == '-') || ++label > ADDR_MAX_LABEL)
                return fail(out, outlen);
        } else {
            return fail(out, outlen);
        }
        out[i] = (char)tolower(c);
    }
    /* An empty last label ("a..": two trailing dots) or one that ends in '-'. */
    if (label == 0 || in[len - 1] == '-')
        return fail(out, outlen);
    out[len] = '\0';
    return MXC_OK;
}

/* atext of RFC 5322 3.2.3: the characters of a dot-atom besides '.'. */
static bool is_atext(unsigned char c)
{
    return isalnum(c) || (c && strchr("!#$%&'*+-/=?^_`{|}~", c));
}

static bool local_ok(const char *s, size_t n)
{
    if (n == 0 || n > ADDR_MAX_LOCAL)
        return false;
    if (s[0] == '"') {
        /* quoted-string: printable ASCII, with \ escaping any printable character. */
        if (n < 2 || s[n - 1] != '"')
            return false;
        for (size_t i = 1; i < n - 1; i++) {
            unsigned char c = (unsigned char)s[i];
            if (c < 0x20 || c > 0x7e)
                return false;
            if (c == '\\') {
                if (++i >= n - 1 || (unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
                    return false;
            } else if (c == '"') {
                return false;
            }
        }
        return true;
    }
    if (s[0] == '.' || s[n - 1] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '.' ? s[i + 1] == '.' : !is_atext(c))
            return false;
    }
    return true;
}

static bool literal_ok(const char *s, size_t n)
{
    char buf[64];
    unsigned char addr[16];

    if (n < 3 || s[0] != '[' || s[n - 1] != ']' || n - 2 >= sizeof buf)
        return false;
    memcpy(buf, s + 1, n - 2);
    buf[n - 2] = '\0';
    if (strncasecmp(buf, "IPv6:", 5) == 0)
        return inet_pton(AF_INET6, buf + 5, addr) == 1;
    return inet_pton(AF_INET, buf, addr) == 1;
}

int addr_mailbox_canon(const char *in, size_t len, bool lower_local, char *out, size_t outlen)
{
    const char *at = NULL;

    if (len == 0 || len > ADDR_MAX_PATH - 2 || len + 1 > outlen || memchr(in, '\0', len))
        return fail(out, outlen);
    /* The domain never contains '@'; a quoted local part may. */
    for (size_t i = len; i-- > 0;)
        if (in[i] == '@') {
            at = in + i;
            break;
        }
    if (!at)
        return fail(out, outlen);
    size_t llen = (size_t)(at - in), dlen = len - llen - 1;
    if (!local_ok(in, llen))
        return fail(out, outlen);
    for (size_t i = 0; i < llen; i++)
        out[i] = lower_local ? (char)tolower((unsigned char)in[i]) : in[i];
    out[llen] = '@';
    if (dlen && at[1] == '[') {
        if (!literal_ok(at + 1, dlen))
            return fail(out, outlen);
        for (size_t i = 0; i < dlen; i++)
            out[llen + 1 + i] = (char)tolower((unsigned char)at[1 + i]);
        out[len] = '\0';
        return MXC_OK;
    }
    if (addr_domain_canon(at + 1, dlen, out + llen + 1, outlen - llen - 1) != MXC_OK)
        return fail(out, outlen);
    return MXC_OK;
}

const char *addr_domain_of(const char *mailbox)
{
    const char *at = strrchr(mailbox, '@');
    return at ? at + 1 : NULL;
}
