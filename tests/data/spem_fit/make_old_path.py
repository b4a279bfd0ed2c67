"""Freeze the old fit_pursuit path's traces (run at commit ea0b20b; see README.md)."""

import csv

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from cpsych.experiments import fit_pursuit as fp

data = fp.prepare_data()
loss, traces = fp.make_loss(data)
old = xr.open_dataset("/tmp/fp_old/fit_pursuit.nc")  # a full run of the old path (80 steps)
rng = np.random.default_rng(1)
cases = {"start": fp.START, "prior_mean": fp.PRIOR_MEAN, "old_map": old["estimate"].values,
         "prior_draw": fp.PRIOR_MEAN + fp.PRIOR_SD * rng.standard_normal(17)}
with open("tests/data/spem_fit/old_path_theta.csv", "w", newline="") as fh:
    w = csv.writer(fh)
    w.writerow(["case", *fp.PARAMS, "neg_log_posterior"])
    for k, th in cases.items():
        w.writerow([k, *map(repr, map(float, th)), repr(float(jax.jit(loss)(jnp.asarray(th))))])
with open("tests/data/spem_fit/old_path_eye_velocity.csv", "w", newline="") as fh:
    w = csv.writer(fh)
    w.writerow(["case", "condition", "bin", "eye_velocity"])
    for k, th in cases.items():
        e = np.asarray(jax.jit(traces)(jnp.asarray(th))[0])
        for i, c in enumerate(fp.CONDITIONS):
            for b in range(fp.BINS):
                w.writerow([k, c, b, repr(float(e[i, b]))])
