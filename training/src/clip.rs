//! Global-norm gradient clipping (PyTorch's `clip_grad_norm_`). burn-optim's
//! `GradientClippingConfig::Norm` clips each tensor by its own norm, which is not what
//! the paper's recipe (clip 1.0) means.

use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

struct SquaredNorms<'a, B: AutodiffBackend> {
    grads: &'a GradientsParams,
    parts: Vec<Tensor<B::InnerBackend, 1>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for SquaredNorms<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.get::<B::InnerBackend, D>(param.id) {
            self.parts.push(g.square().sum());
        }
    }
}

struct Rescale<'a, B: AutodiffBackend> {
    grads: &'a mut GradientsParams,
    scale: Tensor<B::InnerBackend, 1>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Rescale<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.remove::<B::InnerBackend, D>(param.id) {
            let scale: Tensor<B::InnerBackend, D> = self.scale.clone().reshape([1; D]);
            self.grads.register::<B::InnerBackend, D>(param.id, g * scale);
        }
    }
}

/// The L2 norm of all of `module`'s gradients in `grads` taken together (on the device);
/// `None` when there are none.
pub fn global_norm<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    grads: &GradientsParams,
) -> Option<Tensor<B::InnerBackend, 1>> {
    let mut norms = SquaredNorms::<B> { grads, parts: vec![] };
    module.visit(&mut norms);
    (!norms.parts.is_empty()).then(|| Tensor::cat(norms.parts, 0).sum().sqrt())
}

/// Scales all gradients by `min(1, max_norm / ‖g‖)`; returns them and the norm before
/// clipping (stays on the device: no host sync).
pub fn clip_global_norm<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    mut grads: GradientsParams,
    max_norm: f64,
) -> (GradientsParams, Option<Tensor<B::InnerBackend, 1>>) {
    let Some(norm) = global_norm::<B, M>(module, &grads) else {
        return (grads, None);
    };
    let scale = (norm.clone().add_scalar(1e-6).recip() * max_norm).clamp_max(1.0);
    module.visit(&mut Rescale::<B> { grads: &mut grads, scale });
    (grads, Some(norm))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, NdArray};
    use burn::nn::{Linear, LinearConfig};

    type B = Autodiff<NdArray<f32>>;

    #[test]
    fn gradients_are_scaled_to_the_global_norm() {
        let device = Default::default();
        let layer: Linear<B> = LinearConfig::new(3, 2).init(&device);
        let x = Tensor::<B, 2>::ones([1, 3], &device) * 10.0;
        let grads = GradientsParams::from_grads(layer.forward(x).sum().backward(), &layer);
        let (clipped, norm) = clip_global_norm::<B, _>(&layer, grads, 1.0);
        let norm = norm.unwrap().into_scalar();
        assert!(norm > 1.0);
        let w =
            clipped.get::<NdArray<f32>, 2>(layer.weight.id).unwrap().square().sum().into_scalar();
        let b = clipped
            .get::<NdArray<f32>, 1>(layer.bias.as_ref().unwrap().id)
            .unwrap()
            .square()
            .sum()
            .into_scalar();
        assert!(
            ((w + b).sqrt() - 1.0).abs() < 1e-4,
            "global norm after clipping: {}",
            (w + b).sqrt()
        );
    }
}
