/* Planted stand-ins for the reports that each shipped suppression (toolkit/harness/threadprobe.supp)
 * hides, beside a real race that must still be reported. Built and run by
 * tests/harness/test_valgrind.py: two pthreads call both functions, under helgrind or DRD. */
#include <pthread.h>

/* HDF5's recursive mutex, in miniature: the fast path reads the owner outside the lock that
 * guards its writes (correct, since a thread only compares the owner with itself). */
static pthread_mutex_t guard = PTHREAD_MUTEX_INITIALIZER;
static long owner;
__attribute__((noinline)) long H5TS_mutex_lock(long me) {
    if (owner == me) return 1;
    pthread_mutex_lock(&guard);
    owner = me;
    pthread_mutex_unlock(&guard);
    return 0;
}

/* A real race: an unguarded counter. */
static long counter;
__attribute__((noinline)) void planted_real_race(void) { counter++; }

static void *run(void *arg) {
    long me = (long)arg;
    for (int k = 0; k < 2000; k++) {
        H5TS_mutex_lock(me + (k & 1));
        planted_real_race();
    }
    return 0;
}

int main(void) {
    pthread_t a, b;
    pthread_create(&a, 0, run, (void *)1);
    pthread_create(&b, 0, run, (void *)3);
    pthread_join(a, 0);
    pthread_join(b, 0);
    return 0;
}
