//! diffusers' `EulerAncestralDiscreteScheduler`: an Euler step to a lower noise level, then
//! fresh noise from the seeded generator back up to the next level.

use burn::tensor::Tensor;

use super::euler::{SigmaSchedule, euler_defaults, predict_x0};
use super::{Common, NoiseFn, Scheduler, SchedulerConfigFile};
use crate::error::Result;

#[derive(Debug, Clone)]
pub struct EulerAncestralScheduler {
    common: Common,
    schedule: SigmaSchedule,
}

impl EulerAncestralScheduler {
    pub fn new(f: &SchedulerConfigFile, steps: usize) -> Result<Self> {
        let common = Common::resolve(f, euler_defaults())?;
        let schedule = SigmaSchedule::new(&common, steps, false);
        Ok(Self { common, schedule })
    }
}

impl Scheduler for EulerAncestralScheduler {
    fn timesteps(&self) -> &[f64] {
        &self.schedule.timesteps
    }

    fn init_noise_sigma(&self) -> f64 {
        self.schedule.init_noise_sigma(self.common.spacing)
    }

    fn scale_model_input(&self, sample: Tensor<4>, i: usize) -> Tensor<4> {
        let s = self.schedule.sigmas[i];
        sample / (s * s + 1.0).sqrt()
    }

    fn step(
        &mut self,
        model_output: Tensor<4>,
        i: usize,
        sample: Tensor<4>,
        noise: &mut NoiseFn<'_>,
    ) -> Tensor<4> {
        let sigma = self.schedule.sigmas[i];
        let x0 = predict_x0(self.common.prediction, model_output, sample.clone(), sigma);
        let (from, to) = (sigma, self.schedule.sigmas[i + 1]);
        let sigma_up = (to * to * (from * from - to * to) / (from * from)).sqrt();
        let sigma_down = (to * to - sigma_up * sigma_up).sqrt();
        let derivative = (sample.clone() - x0) / sigma;
        let prev = sample.clone() + derivative * (sigma_down - sigma);
        let n = noise(sample.dims());
        prev + n * sigma_up
    }

    fn add_noise(&self, original: Tensor<4>, noise: Tensor<4>, i: usize) -> Tensor<4> {
        original + noise * self.schedule.sigmas[i]
    }
}
