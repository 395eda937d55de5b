/* tests/host/fake_take.h - the final-level audio fake_encored sends and the tests expect. */
#ifndef ENCORE_TEST_FAKE_TAKE_H
#define ENCORE_TEST_FAKE_TAKE_H

#include <stdint.h>

/* never zero, different per candidate and frame */
static inline float fake_final(int cand, int64_t i)
{
    return (float)((i % 199) + 1) / 400.0f * (float)(cand + 1) * (i % 2 ? 1.0f : -1.0f);
}

#endif
