/* Planted defects with known behaviour, so that every detector has a test that can fail.
 *
 * Each function takes the task index i and an amount of busy work. Called through ctypes.CDLL
 * they run with the GIL released, so threads really overlap inside them.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static long spin(long n) {
    volatile long x = 0;
    for (long k = 0; k < n; k++) x += k;
    return x;
}

/* A race on a static buffer: fill it, dawdle, copy it out. Another caller's fill during the
 * dawdle (the race window, sized by work) lands in this caller's result -> corrupt results.
 *
 * Once a second thread has called it, the window also stays open (up to WAIT_US) until another
 * call has filled the buffer since: on a loaded machine the scheduler can run the two threads one
 * after another for a whole short trial, and the tests that need this race must not depend on
 * that luck. One thread (the serial oracle, each process of a processes trial) never waits, and
 * after GIVE_UP waits in a row that nobody ended (a lock around the calls) it stops waiting. */
#define WAIT_US 20000
static unsigned char shared_buf[4096];
static pthread_t first_caller;
static int callers = 0;  /* 0: none yet, 1: one thread, 2: two threads or more */
static long fills = 0;
static int timeouts = 0;
#define GIVE_UP 3
void racy_fill(int i, unsigned char *out, int n, long work) {
    pthread_t me = pthread_self();
    int expected = 0;
    if (__atomic_compare_exchange_n(&callers, &expected, 1, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
        first_caller = me;
    else if (expected == 1 && !pthread_equal(first_caller, me))
        __atomic_store_n(&callers, 2, __ATOMIC_SEQ_CST);
    for (int k = 0; k < n; k++) shared_buf[k] = (unsigned char)(i * 31 + k);
    long mine = __atomic_add_fetch(&fills, 1, __ATOMIC_SEQ_CST);
    spin(work);
    if (__atomic_load_n(&callers, __ATOMIC_SEQ_CST) == 2 && __atomic_load_n(&timeouts, __ATOMIC_SEQ_CST) < GIVE_UP) {
        int w = 0;
        while (w < WAIT_US / 100 && __atomic_load_n(&fills, __ATOMIC_SEQ_CST) == mine) { usleep(100); w++; }
        /* Nobody came in GIVE_UP waits in a row: a lock orders the calls (a remedy under test), stop waiting. */
        if (w == WAIT_US / 100) __atomic_add_fetch(&timeouts, 1, __ATOMIC_SEQ_CST);
        else __atomic_store_n(&timeouts, 0, __ATOMIC_SEQ_CST);
    }
    memcpy(out, shared_buf, (size_t)n);
}

/* Use-after-free / double free: a lazily allocated global scratch buffer that every caller frees.
 * Two overlapping callers free the same block: glibc aborts, or the heap is wrecked -> crash. */
static int *scratch = NULL;
int crashy(int i, long work) {
    if (scratch == NULL) scratch = malloc(1024 * sizeof(int));
    int *p = scratch;
    for (int k = 0; k < 1024; k++) p[k] = i;
    spin(work);
    int v = p[1023];
    free(p);
    scratch = NULL;
    return v;
}

/* Lock-order inversion: even i lock A then B, odd i lock B then A -> deadlock (a hang). */
static pthread_mutex_t lock_a = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t lock_b = PTHREAD_MUTEX_INITIALIZER;
int inverted(int i, long work) {
    pthread_mutex_t *first = (i % 2) ? &lock_b : &lock_a;
    pthread_mutex_t *second = (i % 2) ? &lock_a : &lock_b;
    pthread_mutex_lock(first);
    spin(work);
    pthread_mutex_lock(second);
    int v = i * 3;
    pthread_mutex_unlock(second);
    pthread_mutex_unlock(first);
    return v;
}

/* Genuinely safe: all state on the stack. Scales when the GIL is released. */
long safe_sum(int i, long work) {
    long s = 0;
    for (long k = 0; k < work; k++) s += (k ^ i) & 7;
    return s;
}

/* Correct but serialised behind a private mutex: a "library lock". */
static pthread_mutex_t private_lock = PTHREAD_MUTEX_INITIALIZER;
long locked_sum(int i, long work) {
    pthread_mutex_lock(&private_lock);
    long s = safe_sum(i, work);
    pthread_mutex_unlock(&private_lock);
    return s;
}

/* A rare race, as netcdf-c's add_to_NCList is one: every call reads a shared table, and one call
 * in 48 rebuilds it in place without a lock. A reader that runs during a rebuild sees it torn
 * (zeros) -> a wrong sum. Serially every call sums the whole table. How often a stress trial is
 * spoiled is set by the rebuild's work (the window); tests/bench/races.py measures it. */
static int table[64];
__attribute__((constructor)) static void fill_table(void) {
    for (int k = 0; k < 64; k++) table[k] = k;
}
long rare_rebuild(int i, long work) {
    if (i % 48 == 47) {
        for (int k = 0; k < 64; k++) table[k] = 0;
        spin(work);
        for (int k = 0; k < 64; k++) table[k] = k;
    }
    long s = 0;
    for (int k = 0; k < 64; k++) s += table[k];
    return s;
}
