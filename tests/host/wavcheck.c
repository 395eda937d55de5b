/*
 * wavcheck - asserts where audio starts in a WAV file (channel 1).
 * usage: wavcheck FILE FIRST [FIRST2 ...]: the first non-zero sample must be at one of the
 * given frames (e.g. the riff end, or the riff end plus one JACK period of loop latency), and
 * at least a tenth of the second after it must be non-zero. Prints what it found.
 */
#include <sndfile.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: wavcheck FILE FIRST...\n");
        return 2;
    }
    SF_INFO si = { 0 };
    SNDFILE *f = sf_open(argv[1], SFM_READ, &si);
    if (!f) {
        fprintf(stderr, "wavcheck: cannot read %s\n", argv[1]);
        return 1;
    }
    float *x     = malloc(sizeof(float) * (size_t)(si.frames * si.channels + 1));
    sf_count_t n = sf_readf_float(f, x, si.frames);
    sf_close(f);
    sf_count_t first = -1, nz = 0;
    for (sf_count_t i = 0; i < n; i++)
        if (x[i * si.channels] != 0.0f) {
            first = i;
            break;
        }
    for (sf_count_t i = first; first >= 0 && i < n && i < first + si.samplerate; i++)
        nz += x[i * si.channels] != 0.0f;
    printf("wavcheck: %s: %lld frames at %d Hz, first non-zero at %lld, %lld non-zero in the "
           "second after\n",
           argv[1],
           (long long)n,
           si.samplerate,
           (long long)first,
           (long long)nz);
    free(x);
    for (int k = 2; k < argc; k++)
        if (first == atoll(argv[k]) && nz > si.samplerate / 10) return 0;
    fprintf(stderr, "wavcheck: FAIL: expected the first non-zero sample at one of:");
    for (int k = 2; k < argc; k++)
        fprintf(stderr, " %s", argv[k]);
    fprintf(stderr, "\n");
    return 1;
}
