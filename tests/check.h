/* check.h — a minimal test harness: TEST functions, CHECK assertions, TAP-like "ok"/"not ok"
 * lines that tests/run.sh counts. A binary exits non-zero when any test failed. */
#ifndef VAE_CHECK_H
#define VAE_CHECK_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static int check_test_failed, check_passed, check_failed;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            if (!check_test_failed) check_test_failed = 1;                                         \
            printf("#   %s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond);                     \
            printf(__VA_ARGS__);                                                                   \
            printf("\n");                                                                          \
        }                                                                                          \
    } while (0)

/* |a - b| <= atol + rtol |b| */
#define CHECK_CLOSE(a, b, rtol, atol, what)                                                        \
    CHECK(fabs((double)(a) - (double)(b)) <= (atol) + (rtol) * fabs((double)(b)),                  \
          "%s: %.9g vs %.9g", (what), (double)(a), (double)(b))

#define RUN(test)                                                                                  \
    do {                                                                                           \
        check_test_failed = 0;                                                                     \
        test();                                                                                    \
        if (check_test_failed) {                                                                   \
            check_failed++;                                                                        \
            printf("not ok %s\n", #test);                                                          \
        } else {                                                                                   \
            check_passed++;                                                                        \
            printf("ok %s\n", #test);                                                              \
        }                                                                                          \
        fflush(stdout);                                                                            \
    } while (0)

/* A scratch folder for a test binary's files, and paths inside it (8 live at a time). */
static char check_dir[64];
static inline int check_make_dir(const char *name) {
    snprintf(check_dir, sizeof check_dir, "/tmp/vae-%s-XXXXXX", name);
    return mkdtemp(check_dir) != NULL;
}
static inline const char *check_path(const char *name) {
    static char buf[8][256];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", check_dir, name);
    return buf[k];
}
static inline void check_remove_dir(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", check_dir);
    if (check_dir[0] && system(cmd) != 0) printf("# could not remove %s\n", check_dir);
}

#define CHECK_SUMMARY()                                                                            \
    (printf("# %d passed, %d failed\n", check_passed, check_failed), check_failed ? 1 : 0)

#endif
