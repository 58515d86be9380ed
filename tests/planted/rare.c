/* Planted races on rare paths, for the race pass's power (issue 35).
 *
 * A path is "rare" when a mix of the task index, taken modulo the period, is 0: about 1 call in
 * `period`, spread over the threads whatever the dealing (i % 48 would put every rare index on
 * one thread of two: its own calls are ordered, and such a race could never be seen).
 *
 * Called through ctypes.CDLL, so the GIL is released around each call.
 */
#include <pthread.h>

static long spin(long n) {
    volatile long x = 0;
    for (long k = 0; k < n; k++) x += k;
    return x;
}

int rare(int i, int period) {
    unsigned h = (unsigned)i;  /* murmur3's finaliser */
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    return period > 0 && h % (unsigned)period == 0;
}

/* A rare writer, common readers: one call in `period` rebuilds a table in place that every call
 * reads (netcdf-c's add_to_NCList shape). The race is the rare write against any other call. */
static int table[64];
__attribute__((constructor)) static void fill(void) {
    for (int k = 0; k < 64; k++) table[k] = k;
}
long rare_writer(int i, int period, long work) {
    if (rare(i, period)) {
        for (int k = 0; k < 64; k++) table[k] = 0;
        spin(work);
        for (int k = 0; k < 64; k++) table[k] = k;
    }
    long s = spin(work);
    for (int k = 0; k < 64; k++) s += table[k];
    return s;
}

/* Rare against rare: only a rare call writes a shared static, spins and reads it back, so two
 * rare calls of two threads must run unordered for the race to exist at all. */
static long scratch[8];
long rare_pair(int i, int period, long work) {
    long s = spin(work);
    if (rare(i, period)) {
        for (int k = 0; k < 8; k++) scratch[k] = i + k;
        spin(work);
        for (int k = 0; k < 8; k++) s += scratch[k] - k;
        return s - i * 8;
    }
    return s;
}

/* The rare writer's work with a mutex around the table: correct, so never a race pair. */
static int guarded_table[64];
static pthread_mutex_t guard = PTHREAD_MUTEX_INITIALIZER;
long guarded_writer(int i, int period, long work) {
    long s = spin(work);
    pthread_mutex_lock(&guard);
    if (rare(i, period)) {
        for (int k = 0; k < 64; k++) guarded_table[k] = 0;
        spin(work);
    }
    for (int k = 0; k < 64; k++) guarded_table[k] = k;
    for (int k = 0; k < 64; k++) s += guarded_table[k];
    pthread_mutex_unlock(&guard);
    return s;
}

/* Lock-free work: a rare path too, but every byte it touches is the caller's own. */
long private_writer(int i, int period, long work) {
    int mine[64];
    long s = spin(work);
    for (int k = 0; k < 64; k++) mine[k] = rare(i, period) ? 0 : k;
    for (int k = 0; k < 64; k++) s += mine[k];
    return s;
}
