/* options.c — every command's options from one table (cli_opt): the getopt_long table and
 * short-option string are built from it, values are parsed and range-checked by their kind,
 * --help prints the command's usage, and a mistake gets one line and a hint. */
#include "cli.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

/* A value into the entry's target, by its kind; 0 after printing why. */
static int store(const cli_opt *o, const char *value) {
    switch (o->kind) {
    case CLI_OPT_STRING: *(const char **)o->target = value; return 1;
    case CLI_OPT_FLAG: *(int *)o->target = 1; return 1;
    case CLI_OPT_INT: return cli_parse_int(o->name, value, (long)o->min, (long)o->max, o->target);
    case CLI_OPT_U64: return cli_parse_u64(o->name, value, o->target);
    case CLI_OPT_FLOAT: return cli_parse_float(o->name, value, o->min, o->max, o->target);
    case CLI_OPT_LABEL_COLUMN: return cli_parse_label_column(value, o->target);
    }
    return 0;
}

int cli_parse_options(int argc, char **argv, const char *command, const cli_opt *table, int n,
                      const char *usage, int *first, int *code) {
    struct option longs[CLI_OPTS_MAX + 2];
    char shorts[3 * CLI_OPTS_MAX + 2];
    int at = 0;
    *code = EXIT_USAGE;
    if (n > CLI_OPTS_MAX) return 0;
    for (int i = 0; i < n; i++) {
        const int flag = table[i].kind == CLI_OPT_FLAG;
        longs[i] = (struct option){table[i].name, flag ? no_argument : required_argument, 0,
                                   table[i].letter ? table[i].letter : 256 + i};
        if (table[i].letter) {
            shorts[at++] = (char)table[i].letter;
            if (!flag) shorts[at++] = ':';
        }
    }
    longs[n] = (struct option){"help", no_argument, 0, 'h'};
    longs[n + 1] = (struct option){0, 0, 0, 0};
    shorts[at++] = 'h';
    shorts[at] = '\0';
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, shorts, longs, NULL)) != -1) {
        if (c == 'h') {
            fputs(usage, stdout);
            *code = EXIT_OK;
            return 0;
        }
        int i = c >= 256 ? c - 256 : -1;
        for (int k = 0; i < 0 && k < n; k++)
            if (table[k].letter == c) i = k;
        if (i < 0 || i >= n) { /* getopt said what it was */
            fprintf(stderr, "(try vae %s --help)\n", command);
            return 0;
        }
        if (!store(&table[i], optarg)) return 0;
        if (table[i].given) *table[i].given = 1;
    }
    *first = optind;
    return 1;
}

int cli_operands(int argc, int first, int min, int max, const char *command, const char *what,
                 int *code) {
    const int count = argc - first;
    if (count >= min && count <= max) return 1;
    fprintf(stderr, "vae: %s: %s; it takes %s (try vae %s --help)\n", command,
            count > max ? "unexpected argument" : "missing argument", what, command);
    *code = EXIT_USAGE;
    return 0;
}

int cli_needs_out(const char *out, const char *command, int *code) {
    if (out) return 1;
    fprintf(stderr, "vae: %s: -o FILE is needed (try vae %s --help)\n", command, command);
    *code = EXIT_USAGE;
    return 0;
}
