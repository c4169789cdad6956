//! Arbitrary bytes as a safetensors file.
//!
//! Contract: `SafeTensors::open` either succeeds or returns `Error::Data` naming the file.
//! When it succeeds, every listed tensor has a view of exactly shape x dtype bytes, and
//! `to_f32` converts F32/F16/BF16 tensors to one value per element and refuses other dtypes
//! with `Error::Data`.

use crate::{assert_data_error, safetensors_from_bytes};

pub fn run(data: &[u8]) {
    let st = match safetensors_from_bytes(data) {
        Ok(st) => st,
        Err(e) => return assert_data_error(&e),
    };
    let _ = st.metadata().len();
    assert_eq!(st.names().count(), st.tensors().len());
    for info in st.tensors() {
        let view = st.tensor(&info.name).expect("every listed tensor has a view");
        let bits = info.n_elements() * view.dtype().bitsize();
        assert_eq!(view.data().len() * 8, bits, "tensor `{}`", info.name);
        match st.to_f32(&info.name) {
            Ok(values) => {
                assert!(info.is_supported());
                assert_eq!(values.len(), info.n_elements());
            }
            Err(e) => {
                assert!(!info.is_supported(), "{e}");
                assert_data_error(&e);
            }
        }
    }
}
