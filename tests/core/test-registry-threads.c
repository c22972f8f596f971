/* tests/core/test-registry-threads.c — registry references taken and dropped by several threads at
 * once: under paf serve --workers, every flow accepted on a worker's loop holds its listener's
 * registry, the one registry of the process. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core/paf-internal.h"

#define THREADS 4
/* Enough for a lost update to be all but certain on two cores when the
 * count is not atomic, little enough for valgrind. */
#define REFS 200000

static paf_registry *reg;
static pthread_barrier_t barrier;

static void *run(void *arg) {
        (void)arg;
        /* Together, as connections come and go on every worker at once. */
        pthread_barrier_wait(&barrier);
        for (int i = 0; i < REFS; i++)
                paf_registry_ref(reg);
        pthread_barrier_wait(&barrier);
        for (int i = 0; i < REFS; i++)
                paf_registry_unref(reg);
        return NULL;
}

static void test_refs_from_threads(void **state) {
        (void)state;
        assert_int_equal(paf_registry_new(&reg), 0);
        assert_int_equal(pthread_barrier_init(&barrier, NULL, THREADS), 0);
        pthread_t t[THREADS];
        for (int i = 0; i < THREADS; i++)
                assert_int_equal(pthread_create(&t[i], NULL, run, NULL), 0);
        for (int i = 0; i < THREADS; i++)
                assert_int_equal(pthread_join(t[i], NULL), 0);
        pthread_barrier_destroy(&barrier);
        /* Every reference taken was dropped: ours alone is left, and the
         * registry was never freed under the threads. */
        assert_int_equal(__atomic_load_n(&reg->n_ref, __ATOMIC_RELAXED), 1);
        assert_null(paf_registry_unref(reg));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_refs_from_threads),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
