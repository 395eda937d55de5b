/*
 * backend/cpu/cpu_ops.h - the CPU kernel of every op of the op table (backend/ops.def):
 * void jb_cpu_op_<name>(struct jb_cpu *cpu, parameters). The CPU backend's op slots, the
 * fallback of the op wrappers and the check backend all call these.
 */
#ifndef JB_BACKEND_CPU_CPU_OPS_H
#define JB_BACKEND_CPU_CPU_OPS_H

#include "backend/ops.h"

#define JB_OP(ID, name, params, args) void jb_cpu_op_##name(struct jb_cpu *cpu, JB_UNPAREN params);
#include "backend/ops.def"
#undef JB_OP

/* A CPU kernel context (threads, ISA level, per-thread arena, pool) outside a CPU backend: the
 * check backend and device backends' host fallback own one. NULL + jb_fail on failure. */
struct jb_cpu *jb_cpu_new(int n_threads);
void jb_cpu_delete(struct jb_cpu *cpu);

#endif
