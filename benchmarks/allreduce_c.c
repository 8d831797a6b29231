/* MPI_Allreduce (in place, float32 sum) of buffers of the sizes given as arguments, called from C:
 * the baseline that benchmarks/bench_distributed.py compares mpi4py's Comm.Allreduce with. Rank 0
 * prints {"size": median seconds of 20 calls after 3 warm-up calls, ...} as JSON.
 *   mpicc -O2 -o allreduce_c benchmarks/allreduce_c.c && mpirun -n 2 ./allreduce_c 1000 1000000 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    if (rank == 0) printf("{");
    for (int a = 1; a < argc; a++) {
        long n = atol(argv[a]);
        float *buf = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
        for (long i = 0; i < n; i++) buf[i] = 1.0f;
        double times[20];
        for (int i = 0; i < 23; i++) {
            MPI_Barrier(MPI_COMM_WORLD);
            double t0 = MPI_Wtime();
            MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
            if (i >= 3) times[i - 3] = MPI_Wtime() - t0;
        }
        qsort(times, 20, sizeof(double), cmp);
        if (rank == 0) printf("%s\"%ld\": %.9f", a > 1 ? ", " : "", n, (times[9] + times[10]) / 2);
        free(buf);
    }
    if (rank == 0) printf("}\n");
    MPI_Finalize();
    return 0;
}
