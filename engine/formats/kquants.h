// The GGML block formats beside Q8_0 that Ferry loads, as llama.cpp's
// quantizer writes them into GGUF files: the byte layouts, a plain decoder
// (the statement of what every kernel computes) and an encoder for each.
// Q4_K_M files hold Q4_K and Q6_K, Q5_K_M files Q5_K and Q6_K; matrices whose
// width does not split into 256-value blocks fall back to Q5_0 or Q8_0.
//
// Q4_0, 18 bytes per 32 values: fp16 d, then 16 bytes whose low nibbles are
// values 0-15 and high nibbles values 16-31; value i is d·(q_i − 8).
//
// Q5_0, 22 bytes per 32 values: fp16 d, a little-endian uint32 whose bit i is
// the fifth bit of value i, then the low 4 bits as in Q4_0; value i is
// d·(q_i − 16).
//
// Q4_K, 144 bytes per 256 values: fp16 d, fp16 dmin, 12 bytes of packed 6-bit
// (scale, min) pairs for eight 32-value sub-blocks, then 128 bytes of 4-bit
// quants. Value i of sub-block j is d·scale_j·q_i − dmin·min_j. Pairs 0-3
// sit in the low 6 bits of bytes 0-3 (scales) and 4-7 (mins); pairs 4-7 keep
// their low 4 bits in bytes 8-11 (scale low, min high nibble) and their top 2
// bits in the top bits of bytes 0-3 (scales) and 4-7 (mins). The quants come
// in four 32-byte runs, one per 64 values: the low nibbles hold the first 32
// of those values, the high nibbles the next 32.
//
// Q5_K, 176 bytes per 256 values: Q4_K's d, dmin and packed pairs, then 32
// bytes of fifth bits, then Q4_K's 128 bytes of low 4 bits. The fifth bit of
// the value held by low nibble l of run c is bit 2c of high-bit byte l, of
// the one held by its high nibble bit 2c + 1. Values as in Q4_K, q in [0, 32).
//
// Q6_K, 210 bytes per 256 values: 128 bytes of the quants' low 4 bits, 64
// bytes of their high 2 bits, sixteen int8 scales (one per 16 values), fp16
// d. Value i is d·scale_(i/16)·(q_i − 32), q in [0, 64). Each half of 128
// values takes 64 low-bit bytes and 32 high-bit bytes: byte l (l < 32) of the
// half's low bits holds values l and l + 64 (low, high nibble), byte l + 32
// values l + 32 and l + 96; high-bit byte l holds values l, l + 32, l + 64,
// l + 96 in bit pairs 0-1, 2-3, 4-5, 6-7.
#pragma once

#include <cstdint>

#include "engine/formats/dtype.h"

namespace ferry {

// The (scale, min) pair j (0..7) of a Q4_K block's 12 packed bytes.
inline void Q4KScaleMin(const uint8_t* packed, int j, uint8_t* scale, uint8_t* min) {
  if (j < 4) {
    *scale = packed[j] & 63;
    *min = packed[j + 4] & 63;
  } else {
    *scale = static_cast<uint8_t>((packed[j + 4] & 0x0F) | ((packed[j - 4] >> 6) << 4));
    *min = static_cast<uint8_t>((packed[j + 4] >> 4) | ((packed[j] >> 6) << 4));
  }
}

// One block to its floats (32 for Q8_0, Q4_0 and Q5_0, 256 for the rest).
void DequantizeQ8_0Block(const uint8_t* block, float* out);
void DequantizeQ4_0Block(const uint8_t* block, float* out);
void DequantizeQ5_0Block(const uint8_t* block, float* out);
void DequantizeQ4KBlock(const uint8_t* block, float* out);
void DequantizeQ5KBlock(const uint8_t* block, float* out);
void DequantizeQ6KBlock(const uint8_t* block, float* out);

// Floats to one block: scales chosen from each (sub-)block's range, rounded
// so that no value is clipped, then every value rounded to the nearest level
// those scales give (within half a step).
void QuantizeQ8_0Block(const float* x, uint8_t* block);
void QuantizeQ4_0Block(const float* x, uint8_t* block);
void QuantizeQ5_0Block(const float* x, uint8_t* block);
void QuantizeQ4KBlock(const float* x, uint8_t* block);
void QuantizeQ5KBlock(const float* x, uint8_t* block);
void QuantizeQ6KBlock(const float* x, uint8_t* block);

// The decoder and encoder of a block-quantized dtype (both null for the
// others); enum DType is in engine/formats/dtype.h.
struct BlockCodec {
  void (*decode)(const uint8_t* block, float* out);
  void (*encode)(const float* x, uint8_t* block);
};
BlockCodec CodecOf(DType t);

}  // namespace ferry
