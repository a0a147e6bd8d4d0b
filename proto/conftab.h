/* conftab - table-driven settings for libconfig files: one row per setting (group, name, type,
 * offset of its field, default text, bounds, choices, reload flag, help), parsing a libconfig
 * setting or a row's default text into the field at base+offset with the same checks and the
 * same messages, freeing, comparing, copying and printing fields, and the "FILE:LINE: text"
 * error collection shared by mxcached's and mxcache-policy's loaders.
 *
 * Owns nothing but the strings it stores in fields (freed by conftab_fields_free) and the error
 * messages it appends (freed by conftab_errors_fini). Trusts: nothing in a value; the table is
 * ours (a row of unknown type aborts). Never logs; errors come back as text. What a daemon's
 * file means (its groups, cross-setting checks) stays with it. */
#ifndef MXC_CONFTAB_H
#define MXC_CONFTAB_H

#include <libconfig.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Field types. BOOL: bool; INT: long long; SIZE: uint64_t bytes; DURATION: uint64_t
 * milliseconds (an integer in the file counts seconds); STRING: char * (no control
 * characters); MODE: int, an octal string in the file; ENUM: int, index of the choice; LIST:
 * struct conftab_list (or a struct of the very same layout, which the user asserts). */
enum conftab_type {
    CONFTAB_BOOL,
    CONFTAB_INT,
    CONFTAB_SIZE,
    CONFTAB_DURATION,
    CONFTAB_STRING,
    CONFTAB_MODE,
    CONFTAB_ENUM,
    CONFTAB_LIST
};

struct conftab_list {
    char **items;
    size_t n;
};

/* One setting. min/max are in the stored unit (bytes, milliseconds) and bound INT, SIZE,
 * DURATION and MODE; choices is '|'-separated (ENUM); def is the default as text (LIST:
 * '|'-separated items, "" the empty list). */
struct conftab_param {
    const char *group;
    const char *name;
    enum conftab_type type;
    size_t offset;
    const char *def;
    long long min;
    long long max;
    const char *choices;
    bool reload;
    const char *help;
};

/* CONFTAB_TERSE: the wording mxcache-policy's loader has always used, which its tests and
 * operators know: "N is out of range" for a negative integer size or duration, "N bytes is out
 * of range: allowed MIN to MAX" in plain bytes, size suffixes named "K, M or G", examples
 * "16K" and "5s" in wrong-type messages, and any non-string list element called "a list with
 * elements that are not strings". Without it, mxcached's: bounds in every message, sizes shown
 * with their suffix, "64M" and "30s" as examples, "a list of integers" told apart. */
#define CONFTAB_TERSE 1u

/* A table: its rows and the wording flags of its messages. */
struct conftab {
    const struct conftab_param *params;
    size_t n;
    unsigned flags;
};

/* conftab_set_setting - checks libconfig's setting s against p and stores it in p's field of
 * base (s and its strings are borrowed; the field gets copies). Returns 0; MXC_ECONFIG with the
 * reason in err (the field keeps its previous value); or MXC_ENOMEM. */
int conftab_set_setting(const struct conftab *t, const struct conftab_param *p,
                        const config_setting_t *s, void *base, char *err, size_t errlen);

/* conftab_set_default - the same for p's default text, read as the file would have given it
 * (INT an integer, BOOL a boolean, LIST '|'-separated items, the rest a string), so defaults go
 * through the very checks of the operator's values. 0, MXC_ECONFIG (err) or MXC_ENOMEM. */
int conftab_set_default(const struct conftab *t, const struct conftab_param *p, void *base,
                        char *err, size_t errlen);

/* conftab_fields_free - frees the STRING and LIST fields of every row of t in base (not base
 * itself) and leaves them NULL/empty. NULL-safe for base. */
void conftab_fields_free(const struct conftab *t, void *base);

/* conftab_field_equal - whether p's field is the same in a and b (NULL strings compare equal
 * only to NULL). */
bool conftab_field_equal(const struct conftab_param *p, const void *a, const void *b);

/* conftab_field_copy - replaces p's field in dst by a copy of src's. 0 or MXC_ENOMEM (dst's
 * field unchanged). */
int conftab_field_copy(const struct conftab_param *p, void *dst, const void *src);

/* conftab_print_value - p's field of base in libconfig syntax; sizes and durations as strings
 * with a unit. Errors show in ferror(out). */
void conftab_print_value(const struct conftab_param *p, const void *base, FILE *out);

/* conftab_bounds_text - " (0 to 256)", " (256 to 16M)", " (0s to 10m)", " (one of a, b)",
 * " (octal, 0 to 0777)" or "" for p, into buf; returns buf. */
char *conftab_bounds_text(const struct conftab_param *p, char *buf, size_t buflen);

/* conftab_find - index of group.name in t, or -1; group NULL matches any group. */
int conftab_find(const struct conftab *t, const char *group, const char *name);

/* conftab_group_known - whether any row of t lives in group g. */
bool conftab_group_known(const struct conftab *t, const char *g);

/* conftab_names_text - t's group names ("server, log, ...") or, with group set, the names of
 * that group's settings, ", "-separated and truncated to fit buf. Returns buf. */
char *conftab_names_text(const struct conftab *t, const char *group, char *buf, size_t buflen);

/* conftab_quote - s in double quotes with every byte outside printable ASCII, '"' and '\\' as
 * \xNN, truncated with "..." to fit buf (at least 16 bytes); for echoing operator text in
 * messages. Returns buf. */
char *conftab_quote(const char *s, char *buf, size_t buflen);

/* conftab_choice_index - index of name among the '|'-separated choices (case-insensitive), or
 * -1. */
int conftab_choice_index(const char *choices, const char *name);

/* conftab_choices_text - "a, b, c" from "a|b|c", truncated to fit buf. Returns buf. */
char *conftab_choices_text(const char *choices, char *buf, size_t buflen);

/* conftab_setting_what - "a group", "an integer", ... for a CONFIG_TYPE_* value. Static text. */
const char *conftab_setting_what(int type);

/* Where a load's errors go: the caller's array of *n messages (msg NULL: only counted), which
 * it frees with conftab_errors_fini, and the count of this load's errors. */
struct conftab_log {
    char ***msg;
    size_t *n;
    size_t nerr;
};

/* conftab_error - counts an error and appends "FILE:LINE: text" (line 0: "FILE: text") to
 * log. Robustness: out of memory loses the text, never the error: nerr still counts it. */
void conftab_error(struct conftab_log *log, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* conftab_errors_fini - frees the *n strings of *msgs and the array; leaves them NULL and 0. */
void conftab_errors_fini(char ***msgs, size_t *n);

/* Where the file set one setting, for messages about combinations of settings. */
struct conftab_mark {
    bool set;         /* the file set it, in file (libconfig's name, or the main path) at line */
    const char *file; /* borrowed from libconfig: valid until its config_t is destroyed */
    int line;
    bool bad;         /* its value was refused, so the cross-checks leave it alone */
};

/* conftab_apply - stores libconfig's setting s into row idx of t in base and updates *mark; a
 * refused value is logged as "FILE:LINE: group.name: text", FILE as conftab_display_file shows
 * it for path and incdir. */
void conftab_apply(const struct conftab *t, size_t idx, const config_setting_t *s, void *base,
                   const char *path, const char *incdir, struct conftab_mark *mark,
                   struct conftab_log *log);

/* conftab_set_defaults - stores every row's default into base (conftab_set_default). 0;
 * MXC_ENOMEM; or MXC_ECONFIG with the row in *failed and the reason in err: a bad table. */
int conftab_set_defaults(const struct conftab *t, void *base, const struct conftab_param **failed,
                         char *err, size_t errlen);

/* conftab_display_file - the name to print for libconfig's file name f of the main file path
 * or of an @include: libconfig keeps an include as written, relative to incdir. Returns path,
 * f or buf. */
const char *conftab_display_file(const char *path, const char *incdir, const char *f, char *buf,
                                 size_t buflen);

/* CONFTAB_LOG - a struct conftab_log over errs, a pointer (may be NULL: count only) to any struct
 * with the members char **msg and size_t n. */
#define CONFTAB_LOG(errs) {(errs) ? &(errs)->msg : NULL, (errs) ? &(errs)->n : NULL, 0}

/* conftab_readable - 0 when path opens for reading and is not a directory; else MXC_EIO after
 * logging "(null): no configuration file given" (path NULL) or "PATH: cannot read: " and
 * errno's text. Robustness: libconfig says only "file I/O error"; this gives errno. */
int conftab_readable(const char *path, struct conftab_log *log);

/* conftab_read - config_read_file(lc, path) on lc, which the caller has initialised and
 * destroys; incdir, when not NULL, becomes lc's include directory. Returns 0, or MXC_ECONFIG
 * after logging libconfig's error at its file (an @include as conftab_display_file shows it)
 * and line, or "PATH: cannot read: ..." for an I/O error. An @include whose target exists but
 * is no regular file (a directory, a FIFO, a device) is refused before libconfig reads anything,
 * as "FILE:LINE: @include "NAME": not a regular file": libconfig 1.5 would end the process. */
int conftab_read(config_t *lc, const char *path, const char *incdir, struct conftab_log *log);

#endif
