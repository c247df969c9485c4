"""The CUDA C++ kernels of impls.gpu: source, template instances, launch geometry.

Kept apart from impls.gpu so that it imports without CuPy and compiles without a
device.
"""

from __future__ import annotations

import numpy as np

MAX_THREADS = 256  # threads per block; the kernels need a multiple of 32, <= 1024
ELEMENTS_PER_THREAD = 4  # below this many columns per thread, blocks get smaller
# Rows are split over blocks only until the grid holds this many blocks per
# multiprocessor, and never into pieces shorter than MIN_CHUNK columns.
BLOCKS_PER_MULTIPROCESSOR = 4
MIN_CHUNK = 2048

# The C++ storage type of each dtype. The 16-bit types travel as raw bits and are
# converted by hand, so the source needs no CUDA header and CuPy no bfloat16 dtype.
STORAGE_TYPES = {
    "float32": "float",
    "float64": "double",
    "float16": "float16_bits",
    "bfloat16": "bfloat16_bits",
}

# Raw kernels rather than an ElementwiseKernel plus a CuPy row reduction, because
# a block that owns a whole row reduces it and writes it in one launch, reading
# the row a second time from cache rather than from memory, and because the
# 16-bit types need conversions written by hand. When the rows are too few to
# fill the GPU (64 x 128256), rows are split over blocks: a first kernel stores
# each block's partial sum, or (max, sum of exp) pair, and a second merges and writes.
SOURCE = r"""
struct float16_bits { unsigned short bits; };
struct bfloat16_bits { unsigned short bits; };

// Sums, maxima and the softmax are computed in float for every type but double.
template <typename T> struct accumulator { typedef float type; };
template <> struct accumulator<double> { typedef double type; };

__device__ __forceinline__ float load(const float* data, long long i) {
    return data[i];
}
__device__ __forceinline__ double load(const double* data, long long i) {
    return data[i];
}
__device__ __forceinline__ float load(const float16_bits* data, long long i) {
    float value;
    asm("cvt.f32.f16 %0, %1;" : "=f"(value) : "h"(data[i].bits));
    return value;
}
__device__ __forceinline__ float load(const bfloat16_bits* data, long long i) {
    return __uint_as_float(((unsigned int)data[i].bits) << 16);
}

__device__ __forceinline__ void store(float* data, long long i, float value) {
    data[i] = value;
}
__device__ __forceinline__ void store(double* data, long long i, double value) {
    data[i] = value;
}
__device__ __forceinline__ void store(float16_bits* data, long long i, float value) {
    unsigned short bits;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(bits) : "f"(value));
    data[i].bits = bits;
}
__device__ __forceinline__ void store(bfloat16_bits* data, long long i, float value) {
    unsigned int word = __float_as_uint(value);
    if ((word & 0x7fffffffu) > 0x7f800000u) {
        // A NaN keeps its sign and stays quiet; rounding could turn it into infinity.
        data[i].bits = (unsigned short)((word >> 16) | 0x40u);
        return;
    }
    word += 0x7fffu + ((word >> 16) & 1u);  // round to nearest, ties to even
    data[i].bits = (unsigned short)(word >> 16);
}

__device__ __forceinline__ float exp_of(float x) { return expf(x); }
__device__ __forceinline__ double exp_of(double x) { return exp(x); }

template <typename A> __device__ __forceinline__ A negative_infinity();
template <> __device__ __forceinline__ float negative_infinity<float>() {
    return __int_as_float(0xff800000);
}
template <> __device__ __forceinline__ double negative_infinity<double>() {
    return __longlong_as_double(0xfff0000000000000ULL);
}

template <typename A> __device__ __forceinline__ A quiet_nan();
template <> __device__ __forceinline__ float quiet_nan<float>() {
    return __int_as_float(0x7fc00000);
}
template <> __device__ __forceinline__ double quiet_nan<double>() {
    return __longlong_as_double(0x7ff8000000000000ULL);
}

// Block-wide reductions. blockDim.x must be a multiple of 32 and at most 1024,
// `scratch` must hold 33 values per reduced quantity, and every thread gets
// the result.
template <typename A>
__device__ __forceinline__ A warp_sum(A value) {
    for (int offset = 16; offset > 0; offset >>= 1) {
        value += __shfl_down_sync(0xffffffffu, value, offset);
    }
    return value;
}

template <typename A>
__device__ A block_sum(A value, A* scratch) {
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    value = warp_sum(value);
    if (lane == 0) {
        scratch[warp] = value;
    }
    __syncthreads();
    if (warp == 0) {
        value = lane < (int)(blockDim.x >> 5) ? scratch[lane] : A(0);
        value = warp_sum(value);
        if (lane == 0) {
            scratch[32] = value;
        }
    }
    __syncthreads();
    return scratch[32];
}

// (high, total) describes sum(exp(z - high)) over some logits: the online
// softmax. merge() combines two such pairs into one with the larger maximum.
template <typename A>
__device__ __forceinline__ void merge(A& high, A& total, A other_high, A other_total) {
    const A top = high > other_high ? high : other_high;
    if (top == negative_infinity<A>()) {
        return;  // both pairs are empty; exp(-inf - -inf) would be NaN
    }
    total = total * exp_of(high - top) + other_total * exp_of(other_high - top);
    high = top;
}

template <typename A>
__device__ __forceinline__ void add_logit(A& high, A& total, A logit) {
    if (logit > high) {
        total = total * exp_of(high - logit) + A(1);
        high = logit;
    } else if (high != negative_infinity<A>()) {
        total += exp_of(logit - high);
    }
}

template <typename A>
__device__ void warp_merge(A& high, A& total) {
    for (int offset = 16; offset > 0; offset >>= 1) {
        const A other_high = __shfl_down_sync(0xffffffffu, high, offset);
        const A other_total = __shfl_down_sync(0xffffffffu, total, offset);
        merge(high, total, other_high, other_total);
    }
}

template <typename A>
__device__ void block_merge(A& high, A& total, A* scratch) {
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    warp_merge(high, total);
    if (lane == 0) {
        scratch[warp] = high;
        scratch[33 + warp] = total;
    }
    __syncthreads();
    if (warp == 0) {
        const bool used = lane < (int)(blockDim.x >> 5);
        high = used ? scratch[lane] : negative_infinity<A>();
        total = used ? scratch[33 + lane] : A(0);
        warp_merge(high, total);
        if (lane == 0) {
            scratch[32] = high;
            scratch[65] = total;
        }
    }
    __syncthreads();
    high = scratch[32];
    total = scratch[65];
}

// Grids are (rows, blocks per row): block (r, c) owns columns
// [c * chunk, min((c + 1) * chunk, classes)) of row r. The *_rows kernels
// are the one-block-per-row case and do the reduction and the write in one
// launch; the *_partial and *_write pairs split long rows over blocks.
struct span {
    long long base, begin, end;
    __device__ span(long long classes, long long chunk) {
        base = (long long)blockIdx.x * classes;
        begin = (long long)blockIdx.y * chunk + threadIdx.x;
        end = min(classes, ((long long)blockIdx.y + 1) * chunk);
    }
};

// Softmax backward: dz = s * (d - sum(s * d)).
template <typename T>
__device__ typename accumulator<T>::type row_dot(
    const T* probs, const T* dvalues, const span& part
) {
    typedef typename accumulator<T>::type A;
    A dot = 0;
    for (long long k = part.begin; k < part.end; k += blockDim.x) {
        dot += load(probs, part.base + k) * load(dvalues, part.base + k);
    }
    return dot;
}

template <typename T>
__device__ void write_vjp(
    const T* probs, const T* dvalues, T* out, const span& part,
    typename accumulator<T>::type dot
) {
    for (long long k = part.begin; k < part.end; k += blockDim.x) {
        const long long i = part.base + k;
        store(out, i, load(probs, i) * (load(dvalues, i) - dot));
    }
}

template <typename T>
__global__ void vjp_rows(const T* probs, const T* dvalues, T* out, long long classes) {
    typedef typename accumulator<T>::type A;
    __shared__ A scratch[33];
    const span part(classes, classes);
    const A dot = block_sum(row_dot(probs, dvalues, part), scratch);
    write_vjp(probs, dvalues, out, part, dot);
}

template <typename T>
__global__ void vjp_partial(
    const T* probs, const T* dvalues, typename accumulator<T>::type* partial,
    long long classes, long long chunk
) {
    typedef typename accumulator<T>::type A;
    __shared__ A scratch[33];
    const span part(classes, chunk);
    const A dot = block_sum(row_dot(probs, dvalues, part), scratch);
    if (threadIdx.x == 0) {
        partial[(long long)blockIdx.x * gridDim.y + blockIdx.y] = dot;
    }
}

template <typename T>
__global__ void vjp_write(
    const T* probs, const T* dvalues, const typename accumulator<T>::type* partial,
    T* out, long long classes, long long chunk
) {
    typedef typename accumulator<T>::type A;
    const span part(classes, chunk);
    A dot = 0;
    for (unsigned int c = 0; c < gridDim.y; ++c) {
        dot += partial[(long long)blockIdx.x * gridDim.y + c];
    }
    write_vjp(probs, dvalues, out, part, dot);
}

// The target y of row `row` at column k: the one-hot entry, or 1 at the label.
template <typename T, bool ONE_HOT>
__device__ __forceinline__ typename accumulator<T>::type target_at(
    const T* targets, long long label, long long i, long long k
) {
    if (ONE_HOT) {
        return load(targets, i);
    }
    return k == label ? 1 : 0;
}

// Reads the row's label once; an out-of-range label makes the row NaN instead
// of writing outside `out`.
template <bool ONE_HOT>
__device__ __forceinline__ bool read_label(
    const long long* labels, long long classes, long long* label
) {
    *label = ONE_HOT ? -1 : labels[blockIdx.x];
    return ONE_HOT || (0 <= *label && *label < classes);
}

// CCE from probabilities: dz = (s - y) / N, no reduction.
template <typename T, bool ONE_HOT>
__global__ void cce_write(
    const T* probs, const long long* labels, const T* targets, T* out,
    long long rows, long long classes, long long chunk
) {
    typedef typename accumulator<T>::type A;
    const span part(classes, chunk);
    const A scale = A(1) / A(rows);
    long long label;
    const bool valid = read_label<ONE_HOT>(labels, classes, &label);
    for (long long k = part.begin; k < part.end; k += blockDim.x) {
        const long long i = part.base + k;
        const A y = target_at<T, ONE_HOT>(targets, label, i, k);
        store(out, i, valid ? (load(probs, i) - y) * scale : quiet_nan<A>());
    }
}

// CCE from logits: dz = (softmax(z) - y) / N, with the softmax shifted by the row max.
template <typename T>
__device__ void row_logsum(
    const T* logits, const span& part,
    typename accumulator<T>::type& high, typename accumulator<T>::type& total
) {
    high = negative_infinity<typename accumulator<T>::type>();
    total = 0;
    for (long long k = part.begin; k < part.end; k += blockDim.x) {
        add_logit(high, total, load(logits, part.base + k));
    }
}

template <typename T, bool ONE_HOT>
__device__ void write_logits(
    const T* logits, const long long* labels, const T* targets, T* out,
    long long rows, long long classes, const span& part,
    typename accumulator<T>::type high, typename accumulator<T>::type total
) {
    typedef typename accumulator<T>::type A;
    const A scale = A(1) / A(rows);
    const A factor = scale / total;
    long long label;
    const bool valid = read_label<ONE_HOT>(labels, classes, &label);
    for (long long k = part.begin; k < part.end; k += blockDim.x) {
        const long long i = part.base + k;
        const A y = target_at<T, ONE_HOT>(targets, label, i, k);
        const A value = exp_of(load(logits, i) - high) * factor - y * scale;
        store(out, i, valid ? value : quiet_nan<A>());
    }
}

template <typename T, bool ONE_HOT>
__global__ void logits_rows(
    const T* logits, const long long* labels, const T* targets, T* out,
    long long rows, long long classes
) {
    typedef typename accumulator<T>::type A;
    __shared__ A scratch[66];
    const span part(classes, classes);
    A high, total;
    row_logsum(logits, part, high, total);
    block_merge(high, total, scratch);
    write_logits<T, ONE_HOT>(
        logits, labels, targets, out, rows, classes, part, high, total
    );
}

template <typename T>
__global__ void logits_partial(
    const T* logits, typename accumulator<T>::type* partial,
    long long classes, long long chunk
) {
    typedef typename accumulator<T>::type A;
    __shared__ A scratch[66];
    const span part(classes, chunk);
    A high, total;
    row_logsum(logits, part, high, total);
    block_merge(high, total, scratch);
    if (threadIdx.x == 0) {
        const long long slot = 2 * ((long long)blockIdx.x * gridDim.y + blockIdx.y);
        partial[slot] = high;
        partial[slot + 1] = total;
    }
}

template <typename T, bool ONE_HOT>
__global__ void logits_write(
    const T* logits, const long long* labels, const T* targets,
    const typename accumulator<T>::type* partial, T* out,
    long long rows, long long classes, long long chunk
) {
    typedef typename accumulator<T>::type A;
    const span part(classes, chunk);
    A high = negative_infinity<A>();
    A total = 0;
    for (unsigned int c = 0; c < gridDim.y; ++c) {
        const long long slot = 2 * ((long long)blockIdx.x * gridDim.y + c);
        merge(high, total, partial[slot], partial[slot + 1]);
    }
    write_logits<T, ONE_HOT>(
        logits, labels, targets, out, rows, classes, part, high, total
    );
}
"""


def kernel_names() -> list[str]:
    """List every template instance the CuPy backends launch, for one compile."""
    names = []
    for storage in STORAGE_TYPES.values():
        names += [
            f"vjp_rows<{storage}>",
            f"vjp_partial<{storage}>",
            f"vjp_write<{storage}>",
            f"logits_partial<{storage}>",
        ]
        for one_hot in ("false", "true"):
            names += [
                f"cce_write<{storage}, {one_hot}>",
                f"logits_rows<{storage}, {one_hot}>",
                f"logits_write<{storage}, {one_hot}>",
            ]
    return names


def launch_shape(rows: int, classes: int, multiprocessors: int) -> tuple[int, int, int]:
    """Return (threads per block, blocks per row, columns per block) for a row kernel.

    A row is split over several blocks only when there are too few rows to
    keep every multiprocessor busy, as at 64 x 128256.
    """
    threads = 32
    while threads < MAX_THREADS and threads * ELEMENTS_PER_THREAD < classes:
        threads *= 2
    target_blocks = BLOCKS_PER_MULTIPROCESSOR * multiprocessors
    pieces = 1 if rows >= target_blocks else -(-target_blocks // rows)
    pieces = max(1, min(pieces, classes // MIN_CHUNK))
    chunk = -(-classes // pieces)
    return threads, -(-classes // chunk), chunk


def bfloat16_to_float32(bits: np.ndarray) -> np.ndarray:
    """Return the float32 values of bfloat16 bit patterns; every one is exact."""
    return (bits.astype(np.uint32) << 16).view(np.float32)
