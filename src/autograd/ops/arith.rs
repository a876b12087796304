//! Element-wise arithmetic with broadcasting, scalar ops and unary maths.
//!
//! For broadcasting ops the backward sums the output gradient over the broadcast dimensions
//! ([`crate::tensor::sum_to_shape`]) before adding it into an input's gradient.

use crate::autograd::{Graph, Var};
use crate::error::Result;
use crate::tensor::{self, Tensor};

impl Graph {
    /// `a + b` with broadcasting: `out = broadcast(a, b)`.
    pub fn add(&self, a: Var, b: Var) -> Result<Var> {
        let out = tensor::add(&self.value(a)?, &self.value(b)?)?;
        self.record("add", out, &[a, b], |d, dout, _ins, _out| {
            // da += dout, db += dout (each summed to its shape)
            d[0].add(dout)?;
            d[1].add(dout)
        })
    }

    /// `a - b` with broadcasting.
    pub fn sub(&self, a: Var, b: Var) -> Result<Var> {
        let out = tensor::sub(&self.value(a)?, &self.value(b)?)?;
        self.record("sub", out, &[a, b], |d, dout, _ins, _out| {
            // da += dout, db -= dout
            d[0].add(dout)?;
            if d[1].is_wanted() {
                d[1].add(&dout.scale(-1.0))?;
            }
            Ok(())
        })
    }

    /// `a * b` element-wise with broadcasting.
    pub fn mul(&self, a: Var, b: Var) -> Result<Var> {
        let out = tensor::mul(&self.value(a)?, &self.value(b)?)?;
        self.record("mul", out, &[a, b], |d, dout, ins, _out| {
            // da += dout * b, db += dout * a
            if d[0].is_wanted() {
                d[0].add(&tensor::mul(dout, ins[1])?)?;
            }
            if d[1].is_wanted() {
                d[1].add(&tensor::mul(dout, ins[0])?)?;
            }
            Ok(())
        })
    }

    /// `a / b` element-wise with broadcasting (IEEE: `x / 0` is inf or NaN, no error).
    pub fn div(&self, a: Var, b: Var) -> Result<Var> {
        let out = tensor::div(&self.value(a)?, &self.value(b)?)?;
        self.record("div", out, &[a, b], |d, dout, ins, out| {
            // da += dout / b, db += -dout * a / b^2 = -dout * out / b
            if d[0].is_wanted() {
                d[0].add(&tensor::div(dout, ins[1])?)?;
            }
            if d[1].is_wanted() {
                let g = tensor::div(&tensor::mul(dout, out)?, ins[1])?;
                d[1].add(&g.scale(-1.0))?;
            }
            Ok(())
        })
    }

    /// `x + s` for a scalar `s`.
    pub fn add_scalar(&self, x: Var, s: f32) -> Result<Var> {
        let out = self.value(x)?.map(|v| v + s);
        self.record("add_scalar", out, &[x], |d, dout, _ins, _out| {
            d[0].add(dout)
        })
    }

    /// `x * s` for a scalar `s`.
    pub fn mul_scalar(&self, x: Var, s: f32) -> Result<Var> {
        let out = self.value(x)?.scale(s);
        self.record("mul_scalar", out, &[x], move |d, dout, _ins, _out| {
            if d[0].is_wanted() {
                d[0].add(&dout.scale(s))?;
            }
            Ok(())
        })
    }

    /// `-x` (composite: `x * -1`).
    pub fn neg(&self, x: Var) -> Result<Var> {
        self.mul_scalar(x, -1.0)
    }

    /// An element-wise map `y = f(x)` whose derivative `df(x, y)` is known pointwise.
    fn unary(
        &self,
        op: &'static str,
        x: Var,
        f: impl Fn(f32) -> f32,
        df: impl Fn(f32, f32) -> f32 + Send + 'static,
    ) -> Result<Var> {
        let out = self.value(x)?.map(f);
        self.record(op, out, &[x], move |d, dout, ins, out| {
            // dx += dout * f'(x)
            if let Some(dx) = d[0].sum_mut() {
                let (xs, ys, gs) = (ins[0].data(), out.data(), dout.data());
                for (i, v) in dx.data_mut().iter_mut().enumerate() {
                    *v += gs[i] * df(xs[i], ys[i]);
                }
            }
            Ok(())
        })
    }

    /// `max(x, 0)`; the gradient at exactly 0 is taken as 0. NaN stays NaN.
    pub fn relu(&self, x: Var) -> Result<Var> {
        self.unary(
            "relu",
            x,
            |v| if v > 0.0 || v.is_nan() { v } else { 0.0 },
            |x, _| if x > 0.0 { 1.0 } else { 0.0 },
        )
    }

    /// `tanh(x)`.
    pub fn tanh(&self, x: Var) -> Result<Var> {
        self.unary("tanh", x, f32::tanh, |_, y| 1.0 - y * y)
    }

    /// `exp(x)` (overflows to inf above ~88.7).
    pub fn exp(&self, x: Var) -> Result<Var> {
        self.unary("exp", x, f32::exp, |_, y| y)
    }

    /// Natural log; `log(0) = -inf` and `log(x < 0) = NaN` (IEEE, no error).
    pub fn log(&self, x: Var) -> Result<Var> {
        self.unary("log", x, f32::ln, |x, _| 1.0 / x)
    }

    /// Square root; `sqrt(x < 0) = NaN` (IEEE, no error).
    pub fn sqrt(&self, x: Var) -> Result<Var> {
        self.unary("sqrt", x, f32::sqrt, |_, y| 0.5 / y)
    }

    /// A rank-0 constant (no gradient), for broadcasting a number against a tensor:
    /// [`Graph::constant`] of [`Tensor::scalar`].
    pub fn scalar(&self, value: f32) -> Var {
        self.constant(Tensor::scalar(value))
    }
}
