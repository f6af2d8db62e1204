//! Base64 decoding with WebAssembly `simd128`, 128 characters per loop iteration.
//!
//! wasmtime checks its epoch (the host's CPU limit) at every loop header. The check's slow path
//! is a call, and around it the register allocator spills and reloads the lookup tables a loop
//! keeps in registers. `base64-simd`'s loop pays that every 32 characters, a fifth of its time
//! on a large image; this one pays it every 128. The tables are Wojciech Muła's: two nibble
//! lookups validate a character, a third translates it.

#![allow(unsafe_code)]

/// Per low nibble: the high nibbles that make an invalid character with it (one bit per class
/// of high nibble, see [`HIGH_CLASSES`]).
const LOW_CLASSES: [u8; 16] = [
    0x15, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x13, 0x1a, 0x1b, 0x1b, 0x1b, 0x1a,
];
/// Per high nibble: its class bit (0x10: never valid).
const HIGH_CLASSES: [u8; 16] = [
    0x10, 0x10, 0x01, 0x02, 0x04, 0x08, 0x04, 0x08, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10,
];
/// Per high nibble (minus one for `/`): what to add to a valid character to get its value.
const SHIFT: [i8; 16] = [0, 16, 19, 4, -65, -65, -71, -71, 0, 0, 0, 0, 0, 0, 0, 0];

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
pub(super) use wasm::decode;

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod wasm {
    use ::base64::Engine as _;
    use core::arch::wasm32::{
        i8x16_add, i8x16_eq, i8x16_swizzle, i16x8_shl, i32x4_shl, u8x16, u8x16_shr, u8x16_splat,
        u16x8_shr, u16x8_splat, u32x4_shr, u32x4_splat, v128, v128_and, v128_any_true, v128_load,
        v128_or, v128_store,
    };

    /// Characters per iteration (8 vectors), and the bytes they make.
    const BLOCK: usize = 128;
    const BLOCK_BYTES: usize = 96;

    /// The three bytes of each 32-bit lane, most significant first; then four zero bytes.
    const PACK: v128 = u8x16(2, 1, 0, 6, 5, 4, 10, 9, 8, 14, 13, 12, 255, 255, 255, 255);

    fn table(bytes: [u8; 16]) -> v128 {
        // SAFETY: 16 bytes are a v128's 16 bytes.
        unsafe { core::mem::transmute(bytes) }
    }

    /// Decode `input` (standard alphabet, no whitespace, padding only at the end), or `None`
    /// when it holds anything else: the caller's general decoder then explains the error.
    pub(in super::super) fn decode(input: &[u8]) -> Option<Vec<u8>> {
        let low_classes = table(super::LOW_CLASSES);
        let high_classes = table(super::HIGH_CLASSES);
        let shift = table(super::SHIFT.map(|delta| delta as u8));
        // Whole blocks, leaving at least one quantum (4 characters, where any padding is) to the
        // general decoder.
        let blocks = input.len().saturating_sub(4) / BLOCK;
        let (bulk, tail) = input.split_at(blocks * BLOCK);
        let mut out: Vec<u8> = Vec::with_capacity(input.len() / 4 * 3 + 16);
        let start = out.as_mut_ptr();
        for (i, block) in bulk.chunks_exact(BLOCK).enumerate() {
            let out = start.wrapping_add(i * BLOCK_BYTES);
            // Vector `j` of the block: 16 characters to 12 bytes (and 4 zero bytes the next
            // vector overwrites); non-zero lanes where a character is invalid.
            // SAFETY: `block` has `BLOCK` readable bytes (v128 loads need no alignment in
            // WebAssembly). The capacity holds 3 bytes per 4 characters plus 16, so the last
            // 16-byte store of the last block (4 bytes past its end) stays inside it.
            let vector = |j: usize| unsafe {
                let chars = v128_load(block.as_ptr().add(16 * j).cast());
                let high = u8x16_shr(chars, 4);
                let low = v128_and(chars, u8x16_splat(0x0f));
                let invalid = v128_and(
                    i8x16_swizzle(low_classes, low),
                    i8x16_swizzle(high_classes, high),
                );
                let slash = i8x16_eq(chars, u8x16_splat(b'/'));
                let values = i8x16_add(chars, i8x16_swizzle(shift, i8x16_add(high, slash)));
                v128_store(out.add(12 * j).cast(), pack(values));
                invalid
            };
            // Written out so that no inner loop (and no epoch check) splits the block.
            let invalid = v128_or(
                v128_or(v128_or(vector(0), vector(1)), v128_or(vector(2), vector(3))),
                v128_or(v128_or(vector(4), vector(5)), v128_or(vector(6), vector(7))),
            );
            if v128_any_true(invalid) {
                return None;
            }
        }
        // SAFETY: the stores above wrote every byte up to here.
        unsafe { out.set_len(blocks * BLOCK_BYTES) };
        super::super::ENGINE.decode_vec(tail, &mut out).ok()?;
        Some(out)
    }

    /// 16 six-bit values to 12 bytes, then 4 zero bytes.
    #[inline(always)]
    fn pack(values: v128) -> v128 {
        // (first << 6) | second in each 16-bit lane.
        let pairs = v128_or(
            i16x8_shl(v128_and(values, u16x8_splat(0x003f)), 6),
            u16x8_shr(values, 8),
        );
        // (first pair << 12) | second pair in each 32-bit lane: 24 bits.
        let quads = v128_or(
            i32x4_shl(v128_and(pairs, u32x4_splat(0xffff)), 12),
            u32x4_shr(pairs, 16),
        );
        i8x16_swizzle(quads, PACK)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    /// The tables, one byte at a time, against the alphabet: every byte value is either flagged
    /// invalid or translated to its index. (The SIMD code runs in the plugins' end-to-end tests.)
    #[test]
    fn tables_validate_and_translate_every_byte() {
        for byte in 0..=255u8 {
            let high = usize::from(byte >> 4);
            let low = usize::from(byte & 0x0f);
            let invalid = LOW_CLASSES[low] & HIGH_CLASSES[high] != 0;
            let index = if byte == b'/' { high - 1 } else { high };
            let value = byte.wrapping_add_signed(SHIFT[index]);
            match ALPHABET.iter().position(|&c| c == byte) {
                Some(expected) => {
                    assert!(!invalid, "{:?} flagged invalid", byte as char);
                    assert_eq!(usize::from(value), expected, "{:?}", byte as char);
                }
                None => assert!(invalid, "byte {byte:#04x} passes as base64"),
            }
        }
    }
}
