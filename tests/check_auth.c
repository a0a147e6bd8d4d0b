/* Unit tests of the CURVE key files (proto/keyfile.c) and of mxcached's table of client keys and
 * networks (server/auth.c): what keygen writes, what a reader refuses and why, key and network
 * lookups, and which requests need an admin key. Real files in a temporary directory. */
#include <check.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth.h"
#include "config.h"
#include "keyfile.h"
#include "mxc_err.h"
#include "testutil.h"

static char dir[64];

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/check_auth.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void teardown(void)
{
    char cmd[96];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

static const char *write_file(const char *name, const char *text, mode_t mode)
{
    static char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
    ck_assert_int_eq(chmod(path, mode), 0);
    return path;
}

START_TEST(test_generate_and_read)
{
    struct keyfile made, kf;
    char err[512], path[PATH_MAX], key[KEYFILE_Z85_LEN + 1], name[KEYFILE_NAME_MAX + 1];
    struct stat sb;

    ck_assert_int_eq(keyfile_generate(dir, "mx-1.example_a", false, &made, err, sizeof err), MXC_OK);
    ck_assert(keyfile_valid_z85(made.public_key));
    ck_assert(keyfile_valid_z85(made.secret_key));
    snprintf(path, sizeof path, "%s/mx-1.example_a.key", dir);
    ck_assert_int_eq(stat(path, &sb), 0);
    ck_assert_uint_eq(sb.st_mode & 07777, 0600);
    ck_assert_int_eq(keyfile_read(path, true, &kf, err, sizeof err), MXC_OK);
    ck_assert_str_eq(kf.name, "mx-1.example_a");
    ck_assert_str_eq(kf.public_key, made.public_key);
    ck_assert_str_eq(kf.secret_key, made.secret_key);

    snprintf(path, sizeof path, "%s/mx-1.example_a.pub", dir);
    ck_assert_int_eq(stat(path, &sb), 0);
    ck_assert_uint_eq(sb.st_mode & 07777, 0644);
    ck_assert_int_eq(keyfile_read(path, false, &kf, err, sizeof err), MXC_OK);
    ck_assert_str_eq(kf.secret_key, "");
    ck_assert_int_eq(keyfile_read(path, true, &kf, err, sizeof err), MXC_ECONFIG);
    ck_assert_msg(strstr(err, "secret_key is missing"), "%s", err);

    /* A public key as a file or as its text. */
    ck_assert_int_eq(keyfile_public(path, key, name, sizeof name, err, sizeof err), MXC_OK);
    ck_assert_str_eq(key, made.public_key);
    ck_assert_str_eq(name, "mx-1.example_a");
    ck_assert_int_eq(keyfile_public(made.public_key, key, name, sizeof name, err, sizeof err), MXC_OK);
    ck_assert_str_eq(key, made.public_key);
    ck_assert_int_eq(strlen(name), 8);
    ck_assert_int_eq(strncmp(name, made.public_key, 8), 0);

    /* No overwrite, neither half, unless forced; then both are new. */
    ck_assert_int_eq(keyfile_generate(dir, "mx-1.example_a", false, &kf, err, sizeof err), MXC_EINVAL);
    ck_assert_msg(strstr(err, "exists (use --force to replace it)"), "%s", err);
    ck_assert_int_eq(keyfile_generate(dir, "mx-1.example_a", true, &kf, err, sizeof err), MXC_OK);
    ck_assert_str_ne(kf.public_key, made.public_key);
    ck_assert_int_eq(keyfile_generate(dir, "a/b", false, &kf, err, sizeof err), MXC_EINVAL);
    ck_assert_int_eq(keyfile_generate(dir, "", false, &kf, err, sizeof err), MXC_EINVAL);
}
END_TEST

START_TEST(test_read_refusals)
{
    struct keyfile pair, kf;
    char err[512], text[512];
    const char *p;

    ck_assert_int_eq(keyfile_generate(dir, "good", false, &pair, err, sizeof err), MXC_OK);

    snprintf(text, sizeof text, "name = \"x\";\npublic_key = \"%s\";\nsecret_key = \"%s\";\n",
             pair.public_key, pair.secret_key);
    p = write_file("open.key", text, 0644);
    ck_assert_int_eq(keyfile_read(p, true, &kf, err, sizeof err), MXC_EINVAL);
    ck_assert_msg(strstr(err, "readable by others (mode 0644)"), "%s", err);
    ck_assert_str_eq(kf.secret_key, "");
    p = write_file("group.key", text, 0640); /* the daemon's group may read it */
    ck_assert_int_eq(keyfile_read(p, true, &kf, err, sizeof err), MXC_OK);

    /* A public key that is not the secret key's. */
    struct keyfile other;
    ck_assert_int_eq(keyfile_generate(dir, "other", false, &other, err, sizeof err), MXC_OK);
    snprintf(text, sizeof text, "public_key = \"%s\";\nsecret_key = \"%s\";\n", other.public_key,
             pair.secret_key);
    p = write_file("mismatch.key", text, 0600);
    ck_assert_int_eq(keyfile_read(p, true, &kf, err, sizeof err), MXC_ECONFIG);
    ck_assert_msg(strstr(err, "public_key is not the public key of secret_key"), "%s", err);

    p = write_file("syntax.key", "name = \"x\";\npublic_key = ;\n", 0600);
    ck_assert_int_eq(keyfile_read(p, false, &kf, err, sizeof err), MXC_ECONFIG);
    ck_assert_msg(strstr(err, "syntax.key:2: "), "%s", err);

    p = write_file("short.pub", "public_key = \"abc\";\n", 0644);
    ck_assert_int_eq(keyfile_read(p, false, &kf, err, sizeof err), MXC_ECONFIG);
    ck_assert_msg(strstr(err, "public_key is not a Z85 CURVE key"), "%s", err);

    p = write_file("type.pub", "public_key = 5;\n", 0644);
    ck_assert_int_eq(keyfile_read(p, false, &kf, err, sizeof err), MXC_ECONFIG);
    ck_assert_msg(strstr(err, "type.pub:1: public_key must be a string"), "%s", err);

    snprintf(text, sizeof text, "name = \"a b\";\npublic_key = \"%s\";\n", pair.public_key);
    p = write_file("name.pub", text, 0644);
    ck_assert_int_eq(keyfile_read(p, false, &kf, err, sizeof err), MXC_ECONFIG);
    ck_assert_msg(strstr(err, "may only have letters"), "%s", err);

    /* Unnamed: its name is the key's first 8 characters. */
    snprintf(text, sizeof text, "public_key = \"%s\";\n", pair.public_key);
    p = write_file("anon.pub", text, 0644);
    ck_assert_int_eq(keyfile_read(p, false, &kf, err, sizeof err), MXC_OK);
    ck_assert_int_eq(strncmp(kf.name, pair.public_key, 8), 0);

    snprintf(text, sizeof text, "%s/nonexistent.pub", dir);
    ck_assert_int_eq(keyfile_read(text, false, &kf, err, sizeof err), MXC_EIO);
    ck_assert_msg(strstr(err, "cannot read key file"), "%s", err);

    char key[KEYFILE_Z85_LEN + 1];
    /* 40 characters that are not Z85 are not taken for a file name either. */
    ck_assert_int_eq(keyfile_public("~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~", key, NULL, 0, err, sizeof err),
                     MXC_ECONFIG);
    ck_assert_msg(strstr(err, "is neither a Z85 CURVE key nor a key file"), "%s", err);
    ck_assert_int_eq(keyfile_public("", key, NULL, 0, err, sizeof err), MXC_ECONFIG);
    ck_assert(!keyfile_valid_z85("short"));
    ck_assert(!keyfile_valid_z85(NULL));
}
END_TEST

START_TEST(test_networks)
{
    struct auth_net n;
    char why[96];
    struct auth a = {0};
    struct auth_net nets[3];

    ck_assert_int_eq(auth_net_parse("192.0.2.0/24", &n, why, sizeof why), MXC_OK);
    ck_assert_uint_eq(n.prefix, 96 + 24);
    ck_assert_int_eq(auth_net_parse("192.0.2.1", &n, why, sizeof why), MXC_OK);
    ck_assert_uint_eq(n.prefix, 128);
    ck_assert_int_eq(auth_net_parse("2001:db8::/32", &n, why, sizeof why), MXC_OK);
    ck_assert_uint_eq(n.prefix, 32);
    ck_assert_int_eq(auth_net_parse("0.0.0.0/0", &n, why, sizeof why), MXC_OK);
    ck_assert_int_eq(auth_net_parse("192.0.2.1/24", &n, why, sizeof why), MXC_EINVAL);
    ck_assert_str_eq(why, "host bits set below the prefix length");
    ck_assert_int_eq(auth_net_parse("192.0.2.0/", &n, why, sizeof why), MXC_EINVAL);
    ck_assert_int_eq(auth_net_parse("192.0.2.0/-1", &n, why, sizeof why), MXC_EINVAL);
    ck_assert_int_eq(auth_net_parse("::/129", &n, why, sizeof why), MXC_EINVAL);
    ck_assert_int_eq(auth_net_parse("/8", &n, why, sizeof why), MXC_EINVAL);
    ck_assert_int_eq(auth_net_parse("example.org", &n, why, sizeof why), MXC_EINVAL);

    /* Empty list: anyone; ipc ("") always. */
    ck_assert(auth_address_allowed(&a, "203.0.113.9"));
    ck_assert_int_eq(auth_net_parse("192.0.2.0/25", &nets[0], why, sizeof why), MXC_OK);
    ck_assert_int_eq(auth_net_parse("2001:db8::/32", &nets[1], why, sizeof why), MXC_OK);
    ck_assert_int_eq(auth_net_parse("198.51.100.7", &nets[2], why, sizeof why), MXC_OK);
    a.nets = nets;
    a.nnets = 3;
    ck_assert(auth_address_allowed(&a, "192.0.2.127"));
    ck_assert(!auth_address_allowed(&a, "192.0.2.128"));
    ck_assert(auth_address_allowed(&a, "::ffff:192.0.2.1")); /* IPv4-mapped: the same address */
    ck_assert(auth_address_allowed(&a, "2001:db8:ffff::1"));
    ck_assert(!auth_address_allowed(&a, "2001:db9::1"));
    ck_assert(auth_address_allowed(&a, "198.51.100.7"));
    ck_assert(!auth_address_allowed(&a, "198.51.100.6"));
    ck_assert(!auth_address_allowed(&a, "not-an-address"));
    ck_assert(auth_address_allowed(&a, ""));
}
END_TEST

static char reports[4][600];
static int nreports;

static void report(void *arg, const char *msg)
{
    (void)arg;
    if (nreports < 4)
        snprintf(reports[nreports], sizeof reports[0], "%s", msg);
    nreports++;
}

START_TEST(test_table)
{
    struct keyfile mx1, ops, both;
    char err[512], path[3][PATH_MAX];
    struct config *cfg = config_defaults();

    ck_assert_int_eq(keyfile_generate(dir, "mx1", false, &mx1, err, sizeof err), MXC_OK);
    ck_assert_int_eq(keyfile_generate(dir, "ops", false, &ops, err, sizeof err), MXC_OK);
    ck_assert_int_eq(keyfile_generate(dir, "both", false, &both, err, sizeof err), MXC_OK);
    snprintf(path[0], sizeof path[0], "%s/mx1.pub", dir);
    snprintf(path[1], sizeof path[1], "%s/ops.pub", dir);
    snprintf(path[2], sizeof path[2], "%s/both.key", dir); /* a .key names its public half too */
    char *clients[] = {path[0], both.public_key};
    char *admins[] = {path[1], path[2]};
    char *allow[] = {"127.0.0.0/8"};
    /* The lists below belong to this test; the config's own go back before config_free. */
    struct config_list own[3] = {cfg->security_client_keys, cfg->security_admin_keys, cfg->security_allow};
    cfg->security_client_keys.items = clients;
    cfg->security_client_keys.n = 2;
    cfg->security_admin_keys.items = admins;
    cfg->security_admin_keys.n = 2;
    cfg->security_allow.items = allow;
    cfg->security_allow.n = 1;

    nreports = 0;
    struct auth *a = auth_create(cfg, report, NULL);
    ck_assert_ptr_nonnull(a);
    ck_assert_int_eq(nreports, 0);
    ck_assert_uint_eq(a->nkeys, 3); /* "both" once, as an admin */
    const struct auth_key *k = auth_find(a, mx1.public_key);
    ck_assert_ptr_nonnull(k);
    ck_assert_str_eq(k->name, "mx1");
    ck_assert(!k->admin);
    ck_assert((k = auth_find(a, ops.public_key)) && k->admin && strcmp(k->name, "ops") == 0);
    ck_assert((k = auth_find(a, both.public_key)) && k->admin);
    ck_assert_ptr_null(auth_find(a, "short"));
    ck_assert_ptr_null(auth_find(a, NULL));
    char unknown[KEYFILE_Z85_LEN + 1];
    memcpy(unknown, mx1.public_key, sizeof unknown);
    unknown[0] = unknown[0] == 'a' ? 'b' : 'a';
    ck_assert_ptr_null(auth_find(a, unknown));
    ck_assert(auth_address_allowed(a, "127.0.0.2"));
    ck_assert(!auth_address_allowed(a, "10.0.0.1"));
    auth_free(a);

    /* Every bad entry is reported, by list and index; nothing is made. */
    char missing[PATH_MAX];
    snprintf(missing, sizeof missing, "%s/missing.pub", dir);
    char *bad_clients[] = {missing, "not-a-key"};
    cfg->security_client_keys.items = bad_clients;
    nreports = 0;
    ck_assert_ptr_null(auth_create(cfg, report, NULL));
    ck_assert_int_eq(nreports, 2);
    ck_assert_msg(strstr(reports[0], "security.client_keys[0]: cannot read key file"), "%s", reports[0]);
    ck_assert_msg(strstr(reports[1], "security.client_keys[1]: cannot read key file"), "%s", reports[1]);

    cfg->security_client_keys = own[0];
    cfg->security_admin_keys = own[1];
    cfg->security_allow = own[2];
    config_free(cfg);
}
END_TEST

START_TEST(test_admin_requests)
{
    ck_assert(!auth_needs_admin(MXCACHE__REQUEST__BODY_CHECK));
    ck_assert(!auth_needs_admin(MXCACHE__REQUEST__BODY_PING));
    ck_assert(!auth_needs_admin(MXCACHE__REQUEST__BODY_GET));
    ck_assert(!auth_needs_admin(MXCACHE__REQUEST__BODY_LIST));
    ck_assert(!auth_needs_admin(MXCACHE__REQUEST__BODY_STATS));
    ck_assert(!auth_needs_admin(MXCACHE__REQUEST__BODY_WHITELIST_LIST));
    ck_assert(auth_needs_admin(MXCACHE__REQUEST__BODY_DELETE));
    ck_assert(auth_needs_admin(MXCACHE__REQUEST__BODY_FLUSH));
    ck_assert(auth_needs_admin(MXCACHE__REQUEST__BODY_WHITELIST_ADD));
    ck_assert(auth_needs_admin(MXCACHE__REQUEST__BODY_WHITELIST_REMOVE));
    ck_assert(auth_needs_admin(MXCACHE__REQUEST__BODY_COMPACT));
    ck_assert(auth_needs_admin(MXCACHE__REQUEST__BODY_VERIFY));
    ck_assert(auth_needs_admin(MXCACHE__REQUEST__BODY__NOT_SET)); /* unknown: admin only */
    ck_assert(auth_needs_admin((Mxcache__Request__BodyCase)99));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("auth");
    TCase *tc = tcase_create("keys");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_generate_and_read);
    tcase_add_test(tc, test_read_refusals);
    tcase_add_test(tc, test_networks);
    tcase_add_test(tc, test_table);
    tcase_add_test(tc, test_admin_requests);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
