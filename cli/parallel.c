/* parallel.c — the processes of `mpirun -np N vae train` (the build with MPI=1): ranks, the
 * gradient sums (one MPI_Allreduce over the flat buffer per step) and the weights broadcast.
 * Without MPI=1 the same calls describe one process and nothing of MPI is linked. */
#include "cli.h"

#include <stdio.h>
#include <time.h>

#ifdef VAE_MPI
#include <mpi.h>

/* Communication time, for the report of how much of a step it takes. */
static double comm_seconds;

static double now(void) { return MPI_Wtime(); }

static int sum_floats(void *ctx, float *v, size_t n) {
    (void)ctx;
    double t = now();
    int r = MPI_SUCCESS;
    for (size_t done = 0; done < n && r == MPI_SUCCESS;) { /* counts are ints */
        int count = n - done > (1u << 30) ? (1 << 30) : (int)(n - done);
        r = MPI_Allreduce(MPI_IN_PLACE, v + done, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        done += (size_t)count;
    }
    comm_seconds += now() - t;
    return r != MPI_SUCCESS;
}

static int sum_doubles(void *ctx, double *v, size_t n) {
    (void)ctx;
    double t = now();
    int r = MPI_Allreduce(MPI_IN_PLACE, v, (int)n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    comm_seconds += now() - t;
    return r != MPI_SUCCESS;
}

static vae_collective world;

void cli_parallel_init(int *argc, char ***argv) {
    MPI_Init(argc, argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &world.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world.size);
    world.sum_floats = sum_floats, world.sum_doubles = sum_doubles;
}

int cli_parallel_finish(int code) {
    /* a rank that fails takes the job down with it: the others would wait for it forever */
    if (code != EXIT_OK && code != EXIT_INTERRUPTED && world.size > 1) {
        fprintf(stderr, "vae: rank %d of %d failed (exit %d); stopping every rank\n", world.rank,
                world.size, code);
        MPI_Abort(MPI_COMM_WORLD, code);
    }
    MPI_Finalize();
    return code;
}

int cli_parallel_rank(void) { return world.rank; }
int cli_parallel_size(void) { return world.size; }
const vae_collective *cli_parallel_collective(void) { return world.size > 1 ? &world : NULL; }
double cli_parallel_comm_seconds(void) { return comm_seconds; }

int cli_parallel_broadcast(float *v, size_t n) {
    if (world.size == 1) return 0;
    int r = MPI_SUCCESS;
    for (size_t done = 0; done < n && r == MPI_SUCCESS;) {
        int count = n - done > (1u << 30) ? (1 << 30) : (int)(n - done);
        r = MPI_Bcast(v + done, count, MPI_FLOAT, 0, MPI_COMM_WORLD);
        done += (size_t)count;
    }
    return r != MPI_SUCCESS;
}

const char *cli_parallel_name(void) { return "MPI"; }

#else

void cli_parallel_init(int *argc, char ***argv) { (void)argc, (void)argv; }
int cli_parallel_finish(int code) { return code; }
int cli_parallel_rank(void) { return 0; }
int cli_parallel_size(void) { return 1; }
const vae_collective *cli_parallel_collective(void) { return NULL; }
double cli_parallel_comm_seconds(void) { return 0.0; }
int cli_parallel_broadcast(float *v, size_t n) { return (void)v, (void)n, 0; }
const char *cli_parallel_name(void) { return NULL; }

#endif
