//! The CPU backend's tensors as f32 slices, for the hand-written CPU kernels ([`crate::cpu_conv`],
//! [`crate::cpu_group_norm`], [`crate::cpu_attention`]), without copies.
//!
//! `Tensor::into_data` copies a tensor that anything else still holds (a block's input, kept
//! for its residual sum) twice, into a fresh allocation each time, and `try_into_vec` a third
//! time when the allocation's alignment is not `f32`'s; at SD's VAE sizes the page faults of
//! those copies alone were a tenth of a decode. Here the kernels read the backend's buffer in
//! place, and write into it when nothing else holds it.

use burn::tensor::{DType, Device, Shape, Tensor, TensorData};
use burn_flex::{Flex, FlexTensor, Layout};

use crate::nn::to_f32;

/// An f32, contiguous CPU backend tensor.
pub struct CpuTensor(FlexTensor);

impl CpuTensor {
    /// `x` in f32 (cast when it is not), made contiguous when it is a strided view.
    ///
    /// # Panics
    /// When `x` is not on the CPU backend ([`Device::flex`]); callers check the device.
    pub fn new<const D: usize>(x: Tensor<D>) -> Self {
        debug_assert!(x.device() == Device::flex(), "not a CPU backend tensor");
        let tensor = to_f32(x)
            .try_into_primitive::<Flex>()
            .unwrap_or_else(|e| panic!("not a CPU backend tensor: {e:?}"));
        if tensor.as_slice::<f32>().is_some() {
            Self(tensor)
        } else {
            Self(tensor.to_contiguous())
        }
    }

    /// The values, row-major.
    pub fn values(&self) -> &[f32] {
        self.0
            .as_slice()
            .unwrap_or_else(|| unreachable!("f32 and contiguous by construction"))
    }

    /// The values to write in place, when nothing else holds the buffer and the buffer holds
    /// only this tensor's values (not a view into a larger one).
    pub fn values_mut(&mut self) -> Option<&mut [f32]> {
        let len = self.0.layout().num_elements();
        self.0.try_storage_mut::<f32>().filter(|s| s.len() == len)
    }

    /// `f` applied to the values, in place when nothing else holds the buffer and else to one
    /// copy of them; the result as an f32 tensor of `shape` (of the same number of elements).
    ///
    /// # Panics
    /// When the number of elements differs.
    pub fn update<const D: usize>(
        mut self,
        shape: [usize; D],
        f: impl FnOnce(&mut [f32]),
    ) -> Tensor<D> {
        if let Some(values) = self.values_mut() {
            f(values);
            return self.into_tensor(shape);
        }
        let mut values = self.values().to_vec();
        drop(self);
        f(&mut values);
        tensor_from(values, shape, DType::F32)
    }

    /// This tensor's buffer, as a tensor of `shape` (of the same number of elements).
    ///
    /// # Panics
    /// When the number of elements differs.
    pub fn into_tensor<const D: usize>(self, shape: [usize; D]) -> Tensor<D> {
        let shape = Shape::new(shape);
        assert_eq!(
            shape.num_elements(),
            self.0.layout().num_elements(),
            "element count"
        );
        Tensor::from_primitive::<Flex>(self.0.with_layout(Layout::contiguous(shape)))
    }
}

/// `values` (row-major) as a CPU backend tensor of `shape`, without a copy, in `dtype`.
pub fn tensor_from<const D: usize>(values: Vec<f32>, shape: [usize; D], dtype: DType) -> Tensor<D> {
    let tensor = Tensor::from_primitive::<Flex>(FlexTensor::from_data(TensorData::new(
        values, shape,
    )));
    crate::nn::to_dtype(tensor, dtype)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_tensors_are_read_in_place_and_written_only_when_unique() {
        let device = Device::flex();
        let values: Vec<f32> = (0..24).map(|v| v as f32).collect();
        let x = tensor_from(values.clone(), [2, 3, 4], DType::F32);
        let kept = x.clone();
        let mut shared = CpuTensor::new(x);
        assert_eq!(shared.values(), values);
        assert!(shared.values_mut().is_none(), "another tensor holds the buffer");
        drop(kept);
        let mut unique = CpuTensor::new(Tensor::<3>::from_data(
            TensorData::new(values.clone(), [2, 3, 4]),
            (&device, DType::F32),
        ));
        unique.values_mut().expect("unique")[0] = 100.0;
        let out = unique.into_tensor([4, 6]);
        let got = out.into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(got[0], 100.0);
        assert_eq!(got[1..], values[1..]);
    }

    #[test]
    fn strided_views_are_made_contiguous() {
        let values: Vec<f32> = (0..6).map(|v| v as f32).collect();
        let x = tensor_from(values, [2, 3], DType::F32).swap_dims(0, 1);
        let t = CpuTensor::new(x);
        assert_eq!(t.values(), [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
    }

    #[test]
    fn half_precision_is_read_as_f32() {
        let x = tensor_from(vec![1.5, -2.0], [2], DType::F16);
        assert_eq!(x.dtype(), DType::F16);
        assert_eq!(CpuTensor::new(x).values(), [1.5, -2.0]);
    }
}
