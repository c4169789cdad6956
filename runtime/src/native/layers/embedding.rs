//! Token embedding: row `t` of the table for each token. The table stays in the mapped file
//! in its stored type; rows are dequantized on the way out.
//!
//! Shapes: tokens `[n]`; x, dx `[n × d]`; the table `[vocab × d]`.

use rayon::prelude::*;

use crate::native::matmul::WeightMatrix;

/// `x[i] = table[tokens[i]]`, overwriting `x`.
pub(crate) fn embedding_forward(table: &WeightMatrix, file: &[u8], tokens: &[u32], x: &mut [f32]) {
    let d = table.cols;
    x.par_chunks_mut(d).zip(tokens.par_iter()).for_each(|(row, &t)| table.dequantize_row_into(file, t as usize, row));
}

/// Gradient with respect to the table: `d_table[tokens[i]] += dx[i]`, in token order (a
/// token that occurs twice adds up in a fixed order, whatever the thread count).
pub fn embedding_backward(tokens: &[u32], dx: &[f32], d: usize, d_table: &mut [f32]) {
    for (&t, g) in tokens.iter().zip(dx.chunks_exact(d)) {
        d_table[t as usize * d..(t as usize + 1) * d].iter_mut().zip(g).for_each(|(a, b)| *a += b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_tokens_accumulate() {
        let (d, tokens) = (2usize, [1u32, 0, 1]);
        let dx = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
        let mut dt = vec![0.0f32; 3 * d];
        embedding_backward(&tokens, &dx, d, &mut dt);
        assert_eq!(dt, [3.0, 4.0, 6.0, 8.0, 0.0, 0.0]);
    }
}
