/* mxcachectl commands: each checks its arguments, sends its admin requests through ctl_rpc.c
 * (paging through list and flush replies) and prints the result with ctl_fmt.c. Every command
 * returns the process exit code (ctl.h). Owns nothing beyond the replies it frees. explain sends
 * a CheckRequest with explain set: the service decides as for Postfix and changes no state.
 * verify sends a VerifyRequest: the service probes the address at its backend now (or starts an
 * accept-all check of a domain) and the result goes into the cache.
 *
 * Robustness: paging loops stop when the service's "next" key does not move forward, so a
 * misbehaving service cannot make mxcachectl loop forever. */
#include "ctl.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "addr.h"
#include "keyfile.h"
#include "wire.h"

/* check_nargs - a usage error unless min <= nargs <= max. */
static int check_nargs(const struct ctl *ctl, int min, int max)
{
    const char *syn = ctl->cmd->synopsis + strlen(ctl->cmd->name);

    if (ctl->nargs >= min && ctl->nargs <= max)
        return 0;
    if (*syn == '\0')
        return ctl_usage_error(ctl, "takes no arguments");
    return ctl_usage_error(ctl, "expected%s", syn);
}

/* check_len - a usage error when an argument is empty or longer than CTL_MAX_ARG_LEN. */
static int check_len(const struct ctl *ctl, const char *what, const char *s)
{
    if (!*s)
        return ctl_usage_error(ctl, "empty %s", what);
    if (strlen(s) > CTL_MAX_ARG_LEN)
        return ctl_usage_error(ctl, "%s is too long (at most %d bytes)", what, CTL_MAX_ARG_LEN);
    return 0;
}

/* check_text - like check_len with a limit of max bytes, and a usage error when s has control
 * characters. Security: such a value is never valid, and a message would echo it to a terminal. */
static int check_text(const struct ctl *ctl, const char *what, const char *s, size_t max)
{
    if (!*s)
        return ctl_usage_error(ctl, "empty %s", what);
    if (strlen(s) > max)
        return ctl_usage_error(ctl, "%s is too long (at most %zu bytes)", what, max);
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return ctl_usage_error(ctl, "%s has control characters", what);
    return 0;
}

/* state_fits - whether a --state filter means something in keyspace ks. */
static bool state_fits(Mxcache__Keyspace ks, Mxcache__RecordState s)
{
    switch (s) {
    case MXCACHE__RECORD_STATE__STATE_ANY: return true;
    case MXCACHE__RECORD_STATE__STATE_POSITIVE:
    case MXCACHE__RECORD_STATE__STATE_NEGATIVE:
    case MXCACHE__RECORD_STATE__STATE_TEMPFAIL: return ks == MXCACHE__KEYSPACE__KEYSPACE_VERIFY;
    case MXCACHE__RECORD_STATE__STATE_PENDING:
    case MXCACHE__RECORD_STATE__STATE_PASSED: return ks == MXCACHE__KEYSPACE__KEYSPACE_GREYLIST;
    default: return false;
    }
}

/* check_filters - a usage error when --state does not fit keyspace ks or --domain is empty, too
 * long or has control characters. */
static int check_filters(const struct ctl *ctl, Mxcache__Keyspace ks)
{
    if (!state_fits(ks, ctl->state))
        return ctl_usage_error(ctl, "state %s does not apply to keyspace %s", wire_state_name(ctl->state),
                               wire_keyspace_name(ks));
    if (ctl->domain)
        return check_text(ctl, "--domain", ctl->domain, ADDR_MAX_DOMAIN);
    return 0;
}

/* out_of_memory - reports and returns CTL_EXIT_FAIL. */
static int out_of_memory(void)
{
    return ctl_error(CTL_EXIT_FAIL, "out of memory");
}

/* ---- stats ---- */

/* stats_json, stats_table - print a StatsReply; return an exit code. */
static int stats_json(const Mxcache__StatsReply *s)
{
    json_t *o = json_object(), *ks = json_array(), *cs = json_object();

    if (!o || !ks || !cs) {
        json_decref(o), json_decref(ks), json_decref(cs);
        return out_of_memory();
    }
    json_object_set_new(o, "version", ctl_json_string(s->version));
    json_object_set_new(o, "uptime_s", ctl_json_uint(s->uptime_s));
    json_object_set_new(o, "workers", json_integer(s->workers));
    for (size_t i = 0; i < s->n_keyspaces; i++) {
        json_t *k = json_object();
        json_object_set_new(k, "keyspace", json_string(wire_keyspace_name(s->keyspaces[i]->keyspace)));
        json_object_set_new(k, "keys_estimate", ctl_json_uint(s->keyspaces[i]->keys_estimate));
        json_object_set_new(k, "disk_bytes", ctl_json_uint(s->keyspaces[i]->disk_bytes));
        json_array_append_new(ks, k);
    }
    for (size_t i = 0; i < s->n_counters; i++)
        json_object_set_new(cs, s->counters[i]->name, ctl_json_uint(s->counters[i]->value));
    json_object_set_new(o, "keyspaces", ks);
    json_object_set_new(o, "counters", cs);
    return ctl_json_print(o, stdout) ? out_of_memory() : 0;
}

static int stats_table(const Mxcache__StatsReply *s)
{
    static const char *const kh[] = {"KEYSPACE", "KEYS", "DISK_BYTES"};
    static const char *const ch[] = {"COUNTER", "VALUE"};
    struct ctl_table *top = ctl_table_create(2, NULL, NULL);
    struct ctl_table *kt = ctl_table_create(3, kh, "lrr");
    struct ctl_table *ct = ctl_table_create(2, ch, "lr");
    char up[CTL_SPAN_BUFSIZE], w[16], a[24], b[24];
    int rc = 0;

    if (!top || !kt || !ct) {
        rc = MXC_ENOMEM;
        goto out;
    }
    snprintf(w, sizeof w, "%u", s->workers);
    rc |= ctl_table_addv(top, "version", *s->version ? s->version : "-");
    rc |= ctl_table_addv(top, "uptime", s->uptime_s ? ctl_fmt_span(s->uptime_s * 1000u, up) : "0s");
    rc |= ctl_table_addv(top, "workers", w);
    for (size_t i = 0; i < s->n_keyspaces; i++) {
        snprintf(a, sizeof a, "%llu", (unsigned long long)s->keyspaces[i]->keys_estimate);
        snprintf(b, sizeof b, "%llu", (unsigned long long)s->keyspaces[i]->disk_bytes);
        rc |= ctl_table_addv(kt, wire_keyspace_name(s->keyspaces[i]->keyspace), a, b);
    }
    for (size_t i = 0; i < s->n_counters; i++) {
        snprintf(a, sizeof a, "%llu", (unsigned long long)s->counters[i]->value);
        rc |= ctl_table_addv(ct, s->counters[i]->name, a);
    }
    if (rc)
        goto out;
    ctl_table_flush(top, stdout);
    if (s->n_keyspaces) {
        fputc('\n', stdout);
        ctl_table_flush(kt, stdout);
    }
    if (s->n_counters) {
        fputc('\n', stdout);
        ctl_table_flush(ct, stdout);
    }
out:
    ctl_table_destroy(top);
    ctl_table_destroy(kt);
    ctl_table_destroy(ct);
    return rc ? out_of_memory() : 0;
}

int ctl_cmd_stats(struct ctl *ctl)
{
    Mxcache__Request req = MXCACHE__REQUEST__INIT;
    Mxcache__StatsRequest sr = MXCACHE__STATS_REQUEST__INIT;
    Mxcache__Reply *rep;
    int rc;

    if ((rc = check_nargs(ctl, 0, 0)) != 0)
        return rc;
    req.body_case = MXCACHE__REQUEST__BODY_STATS;
    req.stats = &sr;
    if ((rc = ctl_rpc_call(ctl, &req, MXCACHE__REPLY__BODY_STATS, &rep)) != 0)
        return rc;
    rc = ctl->json ? stats_json(rep->stats) : stats_table(rep->stats);
    mxc_reply_free(rep);
    return rc;
}

/* ---- get, delete ---- */

/* print_entry - prints one entry in detail (table mode) or as one JSON line. */
static int print_entry(const struct ctl *ctl, const Mxcache__Entry *e)
{
    int rc = ctl->json ? ctl_json_print(ctl_entry_json(e), stdout) : ctl_entry_detail(e, ctl_fmt_now_ms(), stdout);
    return rc ? out_of_memory() : 0;
}

int ctl_cmd_get(struct ctl *ctl)
{
    Mxcache__Request req = MXCACHE__REQUEST__INIT;
    Mxcache__GetRequest gr = MXCACHE__GET_REQUEST__INIT;
    Mxcache__Reply *rep;
    int rc;

    if ((rc = check_nargs(ctl, 2, 2)) != 0 || (rc = ctl_parse_keyspace(ctl, ctl->args[0], &gr.keyspace)) != 0 ||
        (rc = check_len(ctl, "KEY", ctl->args[1])) != 0)
        return rc;
    gr.key = ctl->args[1];
    req.body_case = MXCACHE__REQUEST__BODY_GET;
    req.get = &gr;
    if ((rc = ctl_rpc_call(ctl, &req, MXCACHE__REPLY__BODY_GET, &rep)) != 0)
        return rc;
    if (rep->get->found && rep->get->entry)
        rc = print_entry(ctl, rep->get->entry);
    else
        rc = ctl_error(CTL_EXIT_FAIL, "not found: %s %s", wire_keyspace_name(gr.keyspace), gr.key);
    mxc_reply_free(rep);
    return rc;
}

/* print_deleted - the result of a delete or whitelist del that deleted something. */
static int print_deleted(const struct ctl *ctl, const char *what, const char *n1, const char *v1,
                         const char *n2, const char *v2)
{
    if (ctl->json) {
        json_t *o = json_object();
        if (o) {
            json_object_set_new(o, "deleted", json_true());
            json_object_set_new(o, n1, ctl_json_string(v1));
            json_object_set_new(o, n2, ctl_json_string(v2));
        }
        return ctl_json_print(o, stdout) ? out_of_memory() : 0;
    }
    char *c1 = ctl_fmt_clean(v1), *c2 = ctl_fmt_clean(v2);
    if (c1 && c2)
        printf("deleted %s%s %s\n", what, c1, c2);
    free(c1);
    free(c2);
    return c1 && c2 ? 0 : out_of_memory();
}

int ctl_cmd_delete(struct ctl *ctl)
{
    Mxcache__Request req = MXCACHE__REQUEST__INIT;
    Mxcache__DeleteRequest dr = MXCACHE__DELETE_REQUEST__INIT;
    Mxcache__Reply *rep;
    int rc;

    if ((rc = check_nargs(ctl, 2, 2)) != 0 || (rc = ctl_parse_keyspace(ctl, ctl->args[0], &dr.keyspace)) != 0 ||
        (rc = check_len(ctl, "KEY", ctl->args[1])) != 0)
        return rc;
    dr.key = ctl->args[1];
    req.body_case = MXCACHE__REQUEST__BODY_DELETE;
    req.delete_ = &dr;
    if ((rc = ctl_rpc_call(ctl, &req, MXCACHE__REPLY__BODY_DELETE, &rep)) != 0)
        return rc;
    if (rep->delete_->deleted)
        rc = print_deleted(ctl, "", "keyspace", wire_keyspace_name(dr.keyspace), "key", dr.key);
    else
        rc = ctl_error(CTL_EXIT_FAIL, "not found: %s %s", wire_keyspace_name(dr.keyspace), dr.key);
    mxc_reply_free(rep);
    return rc;
}

/* ---- list, whitelist list ---- */

/* advances - whether a paging key moved forward: next must sort after the previous start. */
static bool advances(const char *prev, const char *next)
{
    return *next && (!prev || strcmp(next, prev) > 0);
}

/* list_run - pages through a ListRequest (whitelist false; with the --prefix, --domain and --state
 * filters) or WhitelistListRequest and prints every entry, up to ctl->limit when set. With
 * filters, a page of the service may hold few entries or none, with a cursor to go on. */
static int list_run(struct ctl *ctl, Mxcache__Keyspace ks, bool whitelist, Mxcache__WhitelistKind kind)
{
    struct ctl_table *t = NULL;
    char *after = NULL, *last = NULL;
    uint64_t got = 0;
    int rc = 0;

    if (ctl->after && !(after = strdup(ctl->after)))
        return out_of_memory();
    if (!ctl->json && !(t = ctl_entry_table(ks))) {
        free(after);
        return out_of_memory();
    }
    for (;;) {
        Mxcache__Request req = MXCACHE__REQUEST__INIT;
        Mxcache__ListRequest lr = MXCACHE__LIST_REQUEST__INIT;
        Mxcache__WhitelistListRequest wr = MXCACHE__WHITELIST_LIST_REQUEST__INIT;
        Mxcache__Reply *rep;
        uint32_t want = CTL_PAGE_LIMIT;
        const Mxcache__ListReply *l;

        if (ctl->limit && ctl->limit - got < want)
            want = (uint32_t)(ctl->limit - got);
        if (whitelist) {
            wr.kind = kind;
            wr.start_after = after ? after : "";
            wr.limit = want;
            req.body_case = MXCACHE__REQUEST__BODY_WHITELIST_LIST;
            req.whitelist_list = &wr;
        } else {
            lr.keyspace = ks;
            lr.prefix = ctl->prefix ? (char *)ctl->prefix : "";
            lr.domain = ctl->domain ? (char *)ctl->domain : "";
            lr.state = ctl->state;
            lr.start_after = after ? after : "";
            lr.limit = want;
            req.body_case = MXCACHE__REQUEST__BODY_LIST;
            req.list = &lr;
        }
        if ((rc = ctl_rpc_call(ctl, &req, MXCACHE__REPLY__BODY_LIST, &rep)) != 0)
            break;
        l = rep->list;
        for (size_t i = 0; i < l->n_entries && (!ctl->limit || got < ctl->limit); i++, got++) {
            const Mxcache__Entry *e = l->entries[i];
            if (ctl->json ? ctl_json_print(ctl_entry_json(e), stdout) : ctl_entry_row(t, ks, e, ctl_fmt_now_ms()))
                rc = out_of_memory();
            free(last);
            if (!(last = strdup(e->key)))
                rc = out_of_memory();
            if (rc)
                break;
        }
        /* Rows are aligned in blocks, whatever the service's page size. */
        if (t && (ctl_table_pending(t) >= CTL_TABLE_BLOCK || (ctl->limit && got >= ctl->limit)))
            ctl_table_flush(t, stdout);
        if (rc || !*l->next) {
            mxc_reply_free(rep);
            break;
        }
        if (ctl->limit && got >= ctl->limit) {
            char *c = ctl_fmt_clean(last ? last : l->next);
            fflush(stdout);
            fprintf(stderr, "%s: more entries may follow; continue with --after '%s'\n", CTL_PROGNAME, c ? c : "?");
            free(c);
            mxc_reply_free(rep);
            break;
        }
        if (!advances(after, l->next)) {
            rc = ctl_error(CTL_EXIT_FAIL, "the service returned a paging key that does not advance");
            mxc_reply_free(rep);
            break;
        }
        free(after);
        after = strdup(l->next);
        mxc_reply_free(rep);
        if (!after) {
            rc = out_of_memory();
            break;
        }
    }
    if (t)
        ctl_table_flush(t, stdout);
    free(after);
    free(last);
    ctl_table_destroy(t);
    return rc;
}

int ctl_cmd_list(struct ctl *ctl)
{
    Mxcache__Keyspace ks;
    int rc;

    if ((rc = check_nargs(ctl, 1, 1)) != 0 || (rc = ctl_parse_keyspace(ctl, ctl->args[0], &ks)) != 0 ||
        (rc = check_filters(ctl, ks)) != 0)
        return rc;
    return list_run(ctl, ks, false, MXCACHE__WHITELIST_KIND__WHITELIST_ANY);
}

/* ---- flush ---- */

/* flush_keyspace - repeats FlushRequests for ks until the service has no more; adds the matched
 * counts to *matched. Returns 0 or an exit code after reporting. */
static int flush_keyspace(struct ctl *ctl, Mxcache__Keyspace ks, uint64_t *matched)
{
    char *after = NULL;
    int rc = 0;

    for (;;) {
        Mxcache__Request req = MXCACHE__REQUEST__INIT;
        Mxcache__FlushRequest fr = MXCACHE__FLUSH_REQUEST__INIT;
        Mxcache__Reply *rep;

        fr.keyspace = ks;
        fr.domain = ctl->domain ? (char *)ctl->domain : "";
        fr.state = ctl->state;
        fr.start_after = after ? after : "";
        fr.dry_run = ctl->dry_run;
        req.body_case = MXCACHE__REQUEST__BODY_FLUSH;
        req.flush = &fr;
        if ((rc = ctl_rpc_call(ctl, &req, MXCACHE__REPLY__BODY_FLUSH, &rep)) != 0)
            break;
        *matched += rep->flush->matched;
        if (!rep->flush->more) {
            mxc_reply_free(rep);
            break;
        }
        if (!advances(after, rep->flush->next)) {
            rc = ctl_error(CTL_EXIT_FAIL, "the service returned a paging key that does not advance");
            mxc_reply_free(rep);
            break;
        }
        free(after);
        after = strdup(rep->flush->next);
        mxc_reply_free(rep);
        if (!after) {
            rc = out_of_memory();
            break;
        }
    }
    free(after);
    if (rc && *matched && !ctl->dry_run)
        ctl_error(rc, "flush %s stopped after deleting %llu entries", wire_keyspace_name(ks),
                  (unsigned long long)*matched);
    return rc;
}

/* flush_confirm - asks on the terminal; 0 when the answer is "yes", else an exit code. */
static int flush_confirm(const struct ctl *ctl, const char *what)
{
    char line[64];

    if (ctl->yes || ctl->dry_run)
        return 0;
    if (!isatty(STDIN_FILENO))
        return ctl_usage_error(ctl, "refusing to delete without confirmation: standard input is not a "
                                    "terminal; add --yes (or --dry-run to only count)");
    fprintf(stderr, "Delete %s%s%s%s%s? Type \"yes\" to continue: ", what,
            ctl->domain ? " in domain " : "", ctl->domain ? ctl->domain : "",
            ctl->state ? " in state " : "", ctl->state ? wire_state_name(ctl->state) : "");
    fflush(stderr);
    if (!fgets(line, sizeof line, stdin) || strcmp(line, "yes\n") != 0)
        return ctl_error(CTL_EXIT_USAGE, "flush cancelled");
    return 0;
}

int ctl_cmd_flush(struct ctl *ctl)
{
    static const Mxcache__Keyspace all[] = {
        MXCACHE__KEYSPACE__KEYSPACE_VERIFY, MXCACHE__KEYSPACE__KEYSPACE_GREYLIST,
        MXCACHE__KEYSPACE__KEYSPACE_AWL, MXCACHE__KEYSPACE__KEYSPACE_WHITELIST};
    static const char *const hdr_del[] = {"KEYSPACE", "DELETED"};
    static const char *const hdr_dry[] = {"KEYSPACE", "WOULD_DELETE"};
    Mxcache__Keyspace one;
    const Mxcache__Keyspace *ks;
    uint64_t matched[4] = {0}, total = 0;
    size_t n;
    char what[64];
    int rc;

    if ((rc = check_nargs(ctl, 1, 2)) != 0)
        return rc;
    if (ctl->nargs == 2) {
        /* flush verify ADDRESS: one cached answer, so that the next Check probes anew. */
        static char canon[ADDR_MAX_PATH + 1]; /* lives as long as ctl->args */
        if ((rc = ctl_parse_keyspace(ctl, ctl->args[0], &one)) != 0)
            return rc;
        if (one != MXCACHE__KEYSPACE__KEYSPACE_VERIFY || ctl->domain || ctl->state)
            return ctl_usage_error(ctl, "flush KEYSPACE KEY is only for one address of verify, without filters");
        if (addr_mailbox_canon(ctl->args[1], strlen(ctl->args[1]), false, canon, sizeof canon) != 0)
            return ctl_usage_error(ctl, "'%s' is not a mail address", ctl->args[1]);
        ctl->args[1] = canon;
        return ctl_cmd_delete(ctl);
    }
    if (strcmp(ctl->args[0], "ALL") == 0) {
        ks = all;
        n = 4;
        if (ctl->state)
            return ctl_usage_error(ctl, "--state needs a single keyspace, not ALL");
        if (ctl->domain && (rc = check_text(ctl, "--domain", ctl->domain, ADDR_MAX_DOMAIN)) != 0)
            return rc;
        snprintf(what, sizeof what, "the entries of every keyspace");
    } else if (strcasecmp(ctl->args[0], "all") == 0) {
        return ctl_usage_error(ctl, "to flush every keyspace, write ALL in capitals");
    } else {
        if ((rc = ctl_parse_keyspace(ctl, ctl->args[0], &one)) != 0 || (rc = check_filters(ctl, one)) != 0)
            return rc;
        ks = &one;
        n = 1;
        snprintf(what, sizeof what, "the entries of keyspace %s", wire_keyspace_name(one));
    }
    if ((rc = flush_confirm(ctl, what)) != 0)
        return rc;
    for (size_t i = 0; i < n; i++) {
        if ((rc = flush_keyspace(ctl, ks[i], &matched[i])) != 0) {
            if (total && !ctl->dry_run)
                ctl_error(rc, "deleted %llu entries of other keyspaces before", (unsigned long long)total);
            return rc;
        }
        total += matched[i];
    }
    if (ctl->json) {
        json_t *o = json_object(), *arr = json_array();
        if (!o || !arr) {
            json_decref(o), json_decref(arr);
            return out_of_memory();
        }
        json_object_set_new(o, "dry_run", json_boolean(ctl->dry_run));
        if (ctl->domain)
            json_object_set_new(o, "domain", ctl_json_string(ctl->domain));
        if (ctl->state)
            json_object_set_new(o, "state", json_string(wire_state_name(ctl->state)));
        json_object_set_new(o, "matched", ctl_json_uint(total));
        for (size_t i = 0; i < n; i++) {
            json_t *k = json_object();
            json_object_set_new(k, "keyspace", json_string(wire_keyspace_name(ks[i])));
            json_object_set_new(k, "matched", ctl_json_uint(matched[i]));
            json_array_append_new(arr, k);
        }
        json_object_set_new(o, "keyspaces", arr);
        return ctl_json_print(o, stdout) ? out_of_memory() : 0;
    }
    struct ctl_table *t = ctl_table_create(2, ctl->dry_run ? hdr_dry : hdr_del, "lr");
    char num[24];
    if (!t)
        return out_of_memory();
    for (size_t i = 0; i < n && rc == 0; i++) {
        snprintf(num, sizeof num, "%llu", (unsigned long long)matched[i]);
        rc = ctl_table_addv(t, wire_keyspace_name(ks[i]), num);
    }
    if (n > 1 && rc == 0) {
        snprintf(num, sizeof num, "%llu", (unsigned long long)total);
        rc = ctl_table_addv(t, "total", num);
    }
    ctl_table_flush(t, stdout);
    ctl_table_destroy(t);
    return rc ? out_of_memory() : 0;
}

/* ---- whitelist ---- */

/* whitelist_add, whitelist_del - the "whitelist add|del KIND VALUE" subcommands. */
static int whitelist_add(struct ctl *ctl)
{
    Mxcache__Request req = MXCACHE__REQUEST__INIT;
    Mxcache__WhitelistAddRequest ar = MXCACHE__WHITELIST_ADD_REQUEST__INIT;
    Mxcache__Reply *rep;
    int rc;

    if (ctl->nargs != 3)
        return ctl_usage_error(ctl, "expected: whitelist add KIND VALUE [--comment TEXT] [--ttl DURATION]");
    if ((rc = ctl_parse_kind(ctl, ctl->args[1], false, &ar.kind)) != 0 ||
        (rc = check_len(ctl, "VALUE", ctl->args[2])) != 0)
        return rc;
    ar.value = ctl->args[2];
    ar.comment = ctl->comment ? (char *)ctl->comment : "";
    ar.ttl_ms = ctl->ttl_ms;
    req.body_case = MXCACHE__REQUEST__BODY_WHITELIST_ADD;
    req.whitelist_add = &ar;
    if ((rc = ctl_rpc_call(ctl, &req, MXCACHE__REPLY__BODY_WHITELIST_ADD, &rep)) != 0)
        return rc;
    if (rep->whitelist_add->entry)
        rc = print_entry(ctl, rep->whitelist_add->entry);
    else
        rc = ctl_error(CTL_EXIT_FAIL, "unexpected reply from the service: no entry");
    mxc_reply_free(rep);
    return rc;
}

static int whitelist_del(struct ctl *ctl)
{
    Mxcache__Request req = MXCACHE__REQUEST__INIT;
    Mxcache__WhitelistRemoveRequest wr = MXCACHE__WHITELIST_REMOVE_REQUEST__INIT;
    Mxcache__Reply *rep;
    int rc;

    if (ctl->nargs != 3)
        return ctl_usage_error(ctl, "expected: whitelist del KIND VALUE");
    if ((rc = ctl_parse_kind(ctl, ctl->args[1], false, &wr.kind)) != 0 ||
        (rc = check_len(ctl, "VALUE", ctl->args[2])) != 0)
        return rc;
    wr.value = ctl->args[2];
    req.body_case = MXCACHE__REQUEST__BODY_WHITELIST_REMOVE;
    req.whitelist_remove = &wr;
    if ((rc = ctl_rpc_call(ctl, &req, MXCACHE__REPLY__BODY_DELETE, &rep)) != 0)
        return rc;
    if (rep->delete_->deleted)
        rc = print_deleted(ctl, "whitelist ", "kind", wire_wlkind_name(wr.kind), "value", wr.value);
    else
        rc = ctl_error(CTL_EXIT_FAIL, "not found: whitelist %s %s", wire_wlkind_name(wr.kind), wr.value);
    mxc_reply_free(rep);
    return rc;
}

int ctl_cmd_whitelist(struct ctl *ctl)
{
    const char *sub = ctl->nargs ? ctl->args[0] : "";
    Mxcache__WhitelistKind kind = MXCACHE__WHITELIST_KIND__WHITELIST_ANY;
    int rc;

    if (!*sub)
        return ctl_usage_error(ctl, "expected add, del or list");
    if (strcmp(sub, "add") != 0 && (ctl->given & (CTL_O_COMMENT | CTL_O_TTL)))
        return ctl_usage_error(ctl, "--comment and --ttl only apply to whitelist add");
    if (strcmp(sub, "list") != 0 && (ctl->given & (CTL_O_LIMIT | CTL_O_AFTER)))
        return ctl_usage_error(ctl, "--limit and --after only apply to whitelist list");
    if (strcmp(sub, "add") == 0)
        return whitelist_add(ctl);
    if (strcmp(sub, "del") == 0)
        return whitelist_del(ctl);
    if (strcmp(sub, "list") != 0)
        return ctl_usage_error(ctl, "unknown whitelist command '%s' (add, del, list)", sub);
    if (ctl->nargs > 2)
        return ctl_usage_error(ctl, "expected: whitelist list [KIND]");
    if (ctl->nargs == 2 && (rc = ctl_parse_kind(ctl, ctl->args[1], true, &kind)) != 0)
        return rc;
    return list_run(ctl, MXCACHE__KEYSPACE__KEYSPACE_WHITELIST, true, kind);
}

/* ---- compact ---- */

int ctl_cmd_compact(struct ctl *ctl)
{
    Mxcache__Request req = MXCACHE__REQUEST__INIT;
    Mxcache__CompactRequest cr = MXCACHE__COMPACT_REQUEST__INIT;
    Mxcache__Reply *rep;
    const Mxcache__CompactReply *c;
    const char *name;
    int rc;

    if ((rc = check_nargs(ctl, 0, 1)) != 0)
        return rc;
    if (ctl->nargs == 1 && (rc = ctl_parse_keyspace(ctl, ctl->args[0], &cr.keyspace)) != 0)
        return rc;
    name = ctl->nargs ? wire_keyspace_name(cr.keyspace) : "all";
    req.body_case = MXCACHE__REQUEST__BODY_COMPACT;
    req.compact = &cr;
    if ((rc = ctl_rpc_call(ctl, &req, MXCACHE__REPLY__BODY_COMPACT, &rep)) != 0)
        return rc;
    c = rep->compact;
    if (ctl->json) {
        json_t *o = json_object();
        if (o) {
            json_object_set_new(o, "keyspace", json_string(name));
            json_object_set_new(o, "duration_ms", ctl_json_uint(c->duration_ms));
            json_object_set_new(o, "disk_bytes_before", ctl_json_uint(c->disk_bytes_before));
            json_object_set_new(o, "disk_bytes_after", ctl_json_uint(c->disk_bytes_after));
        }
        rc = ctl_json_print(o, stdout) ? out_of_memory() : 0;
    } else {
        struct ctl_table *t = ctl_table_create(2, NULL, NULL);
        char d[CTL_SPAN_BUFSIZE], b[24], a[24];
        snprintf(b, sizeof b, "%llu", (unsigned long long)c->disk_bytes_before);
        snprintf(a, sizeof a, "%llu", (unsigned long long)c->disk_bytes_after);
        if (!t || ctl_table_addv(t, "keyspace", name) || ctl_table_addv(t, "duration", ctl_fmt_span(c->duration_ms, d)) ||
            ctl_table_addv(t, "disk_bytes_before", b) || ctl_table_addv(t, "disk_bytes_after", a))
            rc = out_of_memory();
        else
            ctl_table_flush(t, stdout);
        ctl_table_destroy(t);
    }
    mxc_reply_free(rep);
    return rc;
}

/* ---- explain ---- */

/* unbracket - s without one pair of angle brackets around it ("<a@b>" -> "a@b", "<>" -> ""),
 * into buf (CTL_MAX_ARG_LEN + 1 bytes; s is at most CTL_MAX_ARG_LEN long). */
static const char *unbracket(const char *s, char *buf)
{
    size_t len = strlen(s);

    if (len >= 2 && s[0] == '<' && s[len - 1] == '>') {
        memcpy(buf, s + 1, len - 2);
        buf[len - 2] = '\0';
        return buf;
    }
    return s;
}

int ctl_cmd_explain(struct ctl *ctl)
{
    Mxcache__Request req = MXCACHE__REQUEST__INIT;
    Mxcache__CheckRequest cr = MXCACHE__CHECK_REQUEST__INIT;
    Mxcache__Reply *rep;
    unsigned char addr[16];
    char sender[CTL_MAX_ARG_LEN + 1], rcpt[CTL_MAX_ARG_LEN + 1];
    int rc;

    if ((rc = check_nargs(ctl, 3, 3)) != 0)
        return rc;
    if (inet_pton(AF_INET, ctl->args[0], addr) != 1 && inet_pton(AF_INET6, ctl->args[0], addr) != 1)
        return ctl_usage_error(ctl, "invalid CLIENT_IP '%s' (an IPv4 or IPv6 address)", ctl->args[0]);
    if (strlen(ctl->args[1]) > CTL_MAX_ARG_LEN)
        return ctl_usage_error(ctl, "SENDER is too long (at most %d bytes)", CTL_MAX_ARG_LEN);
    if ((rc = check_len(ctl, "RECIPIENT", ctl->args[2])) != 0)
        return rc;
    cr.recipient = (char *)unbracket(ctl->args[2], rcpt);
    if (!*cr.recipient)
        return ctl_usage_error(ctl, "empty RECIPIENT");
    if (ctl->client_name && (rc = check_len(ctl, "--client-name", ctl->client_name)) != 0)
        return rc;
    cr.client_address = ctl->args[0];
    cr.client_name = ctl->client_name ? (char *)ctl->client_name : "unknown";
    cr.helo_name = ctl->helo ? (char *)ctl->helo : "";
    cr.sender = (char *)unbracket(ctl->args[1], sender);
    cr.protocol_state = "RCPT";
    cr.mx_name = ctl->mx ? (char *)ctl->mx : "";
    cr.explain = true;
    req.body_case = MXCACHE__REQUEST__BODY_CHECK;
    req.check = &cr;
    if ((rc = ctl_rpc_call(ctl, &req, MXCACHE__REPLY__BODY_CHECK, &rep)) != 0)
        return rc;
    rc = ctl->json ? ctl_json_print(ctl_check_json(rep->check), stdout) : ctl_check_detail(rep->check, stdout);
    mxc_reply_free(rep);
    return rc ? out_of_memory() : 0;
}

/* ---- verify ---- */

/* verify_accept_all - "verify --accept-all DOMAIN": asks the service to start the check and
 * prints its answer ("started"); the result of the check itself never comes back here. */
static int verify_accept_all(struct ctl *ctl)
{
    Mxcache__Request req = MXCACHE__REQUEST__INIT;
    Mxcache__VerifyRequest vr = MXCACHE__VERIFY_REQUEST__INIT;
    Mxcache__Reply *rep;
    char canon[ADDR_MAX_DOMAIN + 1];
    int rc;

    if (ctl->nargs != 0)
        return ctl_usage_error(ctl, "give an ADDRESS or --accept-all DOMAIN, not both");
    if ((rc = check_text(ctl, "DOMAIN", ctl->accept_all, ADDR_MAX_DOMAIN)) != 0)
        return rc;
    if (addr_domain_canon(ctl->accept_all, strlen(ctl->accept_all), canon, sizeof canon) != MXC_OK)
        return ctl_usage_error(ctl, "invalid DOMAIN '%s' (a domain name such as example.com)", ctl->accept_all);
    vr.accept_all_domain = canon;
    req.body_case = MXCACHE__REQUEST__BODY_VERIFY;
    req.verify = &vr;
    if ((rc = ctl_rpc_call(ctl, &req, MXCACHE__REPLY__BODY_VERIFY, &rep)) != 0)
        return rc;
    if (ctl->json) {
        json_t *o = json_object();
        if (o) {
            json_object_set_new(o, "accept_all_domain", json_string(canon));
            json_object_set_new(o, "result", ctl_json_string(rep->verify->result));
        }
        rc = ctl_json_print(o, stdout) ? out_of_memory() : 0;
    } else {
        struct ctl_table *t = ctl_table_create(2, NULL, NULL);
        const char *res = rep->verify->result;
        if (!t || ctl_table_addv(t, "accept_all_domain", canon) || ctl_table_addv(t, "result", *res ? res : "-"))
            rc = out_of_memory();
        else
            ctl_table_flush(t, stdout);
        ctl_table_destroy(t);
    }
    mxc_reply_free(rep);
    return rc;
}

int ctl_cmd_verify(struct ctl *ctl)
{
    Mxcache__Request req = MXCACHE__REQUEST__INIT;
    Mxcache__VerifyRequest vr = MXCACHE__VERIFY_REQUEST__INIT;
    Mxcache__Reply *rep;
    char buf[CTL_MAX_ARG_LEN + 1], canon[ADDR_MAX_PATH + 1];
    int rc;

    /* Robustness: a probe takes seconds, or minutes with a slow backend; resending it to the next
     * server after the usual short silence would start a second probe there. */
    if (!(ctl->given & CTL_O_TIMEOUT))
        ctl->timeout_ms = CTL_VERIFY_TIMEOUT_MS;
    ctl->failover_ms = ctl->timeout_ms / 3;
    if (ctl->accept_all)
        return verify_accept_all(ctl);
    if (ctl->nargs != 1)
        return ctl_usage_error(ctl, "expected one ADDRESS, or --accept-all DOMAIN");
    if ((rc = check_text(ctl, "ADDRESS", ctl->args[0], ADDR_MAX_PATH)) != 0)
        return rc;
    vr.address = (char *)unbracket(ctl->args[0], buf);
    if (!*vr.address)
        return ctl_usage_error(ctl, "empty ADDRESS");
    if (addr_mailbox_canon(vr.address, strlen(vr.address), false, canon, sizeof canon) != MXC_OK)
        return ctl_usage_error(ctl, "invalid ADDRESS '%s' (a mailbox local@domain, as in RCPT TO)", vr.address);
    req.body_case = MXCACHE__REQUEST__BODY_VERIFY;
    req.verify = &vr;
    if ((rc = ctl_rpc_call(ctl, &req, MXCACHE__REPLY__BODY_VERIFY, &rep)) != 0)
        return rc;
    rc = ctl->json ? ctl_json_print(ctl_verify_json(rep->verify, canon), stdout)
                   : ctl_verify_detail(rep->verify, canon, stdout);
    mxc_reply_free(rep);
    return rc ? out_of_memory() : 0;
}

/* ---- keygen ---- */

int ctl_cmd_keygen(struct ctl *ctl)
{
    struct keyfile kf;
    char err[512];
    const char *dir = ctl->dir ? ctl->dir : ".";
    int rc;

    if ((rc = check_nargs(ctl, 1, 1)) != 0)
        return rc;
    if (!keyfile_valid_name(ctl->args[0]))
        return ctl_usage_error(ctl, "invalid key name '%s' (1 to %d letters, digits, '.', '-', '_')",
                               ctl->args[0], KEYFILE_NAME_MAX);
    rc = keyfile_generate(dir, ctl->args[0], ctl->force, &kf, err, sizeof err);
    if (rc != MXC_OK)
        return ctl_error(rc == MXC_EINVAL ? CTL_EXIT_USAGE : CTL_EXIT_FAIL, "keygen: %s", err);
    memset(kf.secret_key, 0, sizeof kf.secret_key);
    if (ctl->json) {
        json_t *o = json_object();
        if (o) {
            json_object_set_new(o, "name", json_string(kf.name));
            json_object_set_new(o, "public_key", json_string(kf.public_key));
            json_object_set_new(o, "secret_key_file", json_sprintf("%s/%s.key", dir, kf.name));
            json_object_set_new(o, "public_key_file", json_sprintf("%s/%s.pub", dir, kf.name));
        }
        return ctl_json_print(o, stdout) ? out_of_memory() : 0;
    }
    printf("name        %s\npublic key  %s\nsecret key  %s/%s.key (mode 0600: keep it on the host that uses it)\n"
           "public key  %s/%s.pub (list it in the service's security.client_keys or admin_keys)\n",
           kf.name, kf.public_key, dir, kf.name, dir, kf.name);
    return 0;
}
