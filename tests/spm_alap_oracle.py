"""An independent NumPy re-derivation of SPM's ALAP scheme for the force-matching demo.

Written from a reading of the maths of spm_ALAP (SPM12) for ALAP_demo_attenuation's settings,
with noise off: plain NumPy and ``scipy.linalg.expm``, nothing from cpsych. It is a test oracle,
not part of the engine.

One time bin ``t`` (``dt = 1``):

1. Action's generalised motion: the Taylor embedding, at ``t``, of the actions held at the
   start of every bin so far (later samples clamped to now).
2. The world's generalised states and sensations from its state ``x`` at order 0 and the
   chain rule, ``x^(k+1) = f_x x^(k) + f_a a^(k)``, ``y^(k) = g_x x^(k) + g_v v^(k)``, where
   the external force's own higher orders ``v^(k)`` (``k >= 1``) in ``y^(k)`` are the values
   the world's generalised causes reached at the end of the previous bin (the world's
   generalised causes are integrated within a bin and only order 0 is re-read from the
   input), the external force in ``x``'s motion and at order 0 being the input's.
3. Recognition (spm_LAP without the mean-field term): generalised errors ``E`` with the top
   order of state motion zeroed (its rows kept in ``dE/du``), precision ``kron(R, diag(exp(p)))`` with the sensory
   log-precision ``8 - h tanh(v_self + x_self)`` at order 0; the gradient
   ``dE/du' Pi E + 1/2 E' dPi/du E - n/2 sum dp/du``, the curvature ``dE/du' Pi dE/du``
   (no precision terms), conditional covariance its inverse.
4. Action: ``da/dt = -(dE/da)' Pi_a E - exp(-2) a`` with ``Pi_a = kron(R, diag(1, 0, 0, 0))``
   on ``[y_prop, y_touch, v_self, v_ext]`` and the reflex arc ``dy^(k)/da = g_x f_x^(k-1) f_a``
   (``k >= 1``; ``g_a = 0``).
5. One exact local-linearisation step of the joint system of the world's generalised
   sensations and states, its generalised inputs, the expectations, the prior and action,
   whose Jacobian couples the generalised sensations to the states one order up (``y^(k)``
   moves with ``g_x x^(k+1) + g_v v^(k+1)``), the states to action at order 0, and
   recognition and action to the sensations (and to each other) through ``dE/dy``,
   ``dE/du`` and ``dE/da``.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.linalg import expm

N_ORD = 5  # E.n = 4
D_ORD = 3  # E.d = 2
S = 0.5
N_BINS = 32


def temporal_precision(n: int, s: float) -> np.ndarray:
    """Inverse covariance of n generalised coordinates of Gaussian-autocorrelated noise,
    ``rho(h) = exp(-h**2 / (4 s**2))``: ``cov(x^(i), x^(j)) = (-1)**i rho^(i+j)(0)``."""
    a = 2.0 * s * s  # rho(h) = exp(-h^2 / (2 a))
    def rho_deriv0(m):  # m-th derivative of rho at 0
        if m % 2:
            return 0.0
        k = m // 2
        return (-1) ** k * math.prod(range(1, 2 * k, 2)) / a ** k
    V = np.array([[(-1) ** i * rho_deriv0(i + j) for j in range(n)] for i in range(n)])
    return np.linalg.inv(V)


def embed(series: np.ndarray, n: int, t: int) -> np.ndarray:
    """Taylor embedding (n, k) of ``series`` (k, T) at 0-based sample ``t`` (centred window of
    n samples, first sample rounded towards zero, indices clamped to the series)."""
    T = series.shape[1]
    s1 = t + 1.0  # 1-based time
    first = int(np.fix(s1 - (n + 1) / 2.0)) + 1
    idx = np.arange(first, first + n)
    tau = idx - s1
    Tm = np.array([[tau_i ** j / math.factorial(j) for j in range(n)] for tau_i in tau])
    E = np.linalg.inv(Tm)
    idx = np.clip(idx, 1, T) - 1
    return E @ series[:, idx].T


def shift(m: int) -> np.ndarray:
    return np.eye(m, k=1)


def simulate(prior_self: np.ndarray, external: np.ndarray, h: float = 6.0,
             log_pi_y: float = 8.0, log_pi_x: float = 4.0, log_pi_self: float = 6.0,
             log_pi_ext: float = 0.0, pi_action: float = 1.0, stale_cause: bool = True
             ) -> dict[str, np.ndarray]:
    """Run the ALAP scheme over the trial (noise off).

    Returns ``x_process (T,)``, ``x (T, 2)`` (order-0 expectations of ``x_self, x_ext``),
    ``x_var (T, 2)``, ``a (T,)``: everything read at the start of each bin, as SPM's
    ``pU``/``qU``. ``stale_cause=False`` uses the input's own higher orders of the external
    force in the sensations (for attributing differences, not SPM).
    """
    n, d, T = N_ORD, D_ORD, prior_self.shape[0]
    R = temporal_precision(n, S)
    U = np.stack([prior_self, np.zeros(T)])  # agent's prior (2, T)
    C = np.asarray(external, float)[None, :]  # the world's cause (1, T)
    nx, nv, ny = 2, 2, 2
    ne_v = n * (ny + nv)
    nu = n * nx + d * nv
    # world: one state, outputs [y1, y2, v_ext] per order (gv = 3)
    x_w = 0.0
    v_old = np.zeros((n, 3))  # the world's generalised outputs at the end of the last bin
    mu = np.zeros(nu)
    a = 0.0
    held = []  # actions at the start of each bin
    out = {k: [] for k in ("x_process", "x", "x_var", "a")}

    # recognition errors E(u, y~, c~), affine; rows [ev (n, 4) order-major, ex (n, 2)]
    def errors(u, y, c, zero_top=False):
        xt = u[:n * nx].reshape(n, nx)
        vt = np.zeros((n, nv))
        vt[:d] = u[n * nx:].reshape(d, nv)
        ct = np.zeros((n, nv))
        ct[:d] = c.reshape(d, nv)
        g = np.stack([xt[:, 0], xt[:, 0] + xt[:, 1]], axis=1)
        ev = np.concatenate([y - g, vt - ct], axis=1)
        f = vt - xt / 4.0
        Dx = np.vstack([xt[1:], np.zeros((1, nx))])
        ex = Dx - f
        if zero_top:
            ex[-1] = 0.0  # top order of state motion: out of the error, not of dE/du
        return np.concatenate([ev.ravel(), ex.ravel()])

    def jac(fun, z0):
        base = fun(z0)
        return np.stack([fun(z0 + e) - base for e in np.eye(z0.size)], axis=1)

    for t in range(T):
        # 1. action's generalised motion from its history
        A = np.array(held + [a])[None, :]
        a_gen = embed(A, n, len(held))[:, 0]
        cz = embed(C, n, t)[:, 0]  # the external force, generalised
        # 2. the world's generalised states and outputs
        fa = 1.0 - np.tanh(a) ** 2
        xg = np.zeros(n)
        xg[0] = x_w
        xg[1] = np.tanh(a) - x_w / 4.0
        for k in range(1, n - 1):
            xg[k + 1] = -xg[k] / 4.0 + fa * a_gen[k]
        vg = np.zeros((n, 3))
        vg[:, 2] = cz
        ve_in_y = v_old[:, 2].copy() if stale_cause else cz.copy()
        ve_in_y[0] = cz[0]
        vg[:, 0] = xg
        vg[:, 1] = xg + ve_in_y
        y = vg[:, :2]
        c = embed(U, n, t)[:d]  # (d, 2)
        # 3. recognition
        E = errors(mu, y, c.ravel(), zero_top=True)
        dEdu = jac(lambda u: errors(u, y, c.ravel()), mu)
        dEdy = jac(lambda yy: errors(mu, yy.reshape(n, ny), c.ravel()), y.ravel())
        dEdc = jac(lambda cc: errors(mu, y, cc), c.ravel())
        x0s, v0s = mu[0], mu[n * nx]
        th = np.tanh(v0s + x0s)
        p_y = log_pi_y - h * th
        p_h = np.array([p_y, p_y, log_pi_self, log_pi_ext])
        p_g = np.array([log_pi_x, log_pi_x])
        iS = np.block([[np.kron(R, np.diag(np.exp(p_h))), np.zeros((ne_v, n * nx))],
                       [np.zeros((n * nx, ne_v)), np.kron(R, np.diag(np.exp(p_g)))]])
        dp = -h * (1.0 - th ** 2)  # d p_y / d x_self = d p_y / d v_self (order 0)
        dPi = np.zeros_like(iS)
        dPi[:ne_v, :ne_v] = np.kron(R, np.diag(np.array([dp, dp, 0, 0]) * np.exp(p_h)))
        prec_term = 0.5 * E @ dPi @ E - 0.5 * n * (2 * dp)
        dLdu = dEdu.T @ iS @ E
        dLdu[0] += prec_term  # x_self, order 0
        dLdu[n * nx] += prec_term  # v_self, order 0
        dLduu = dEdu.T @ iS @ dEdu
        Cu = np.linalg.inv(dLduu)
        # 4. action
        dyda = np.zeros((n, ny))
        for k in range(1, n):
            dyda[k] = (-0.25) ** (k - 1) * fa  # g_x f_x^(k-1) f_a, g_x = [1, 1]
        dEda = dEdy @ dyda.ravel()
        iG = np.zeros_like(iS)
        iG[:ne_v, :ne_v] = np.kron(R, np.diag([pi_action, 0.0, 0.0, 0.0]))
        dVda = -dEda @ iG @ E - np.exp(-2.0) * a
        # record (start of bin)
        out["x_process"].append(x_w)
        out["x"].append([mu[0], mu[1]])
        out["x_var"].append([Cu[0, 0], Cu[1, 1]])
        out["a"].append(a)
        held.append(a)
        # 5. joint step: [yv (n*3), xw (n), cz~ (n), u (nu), c (d*2), a]
        dydv = np.zeros((n * ny, n * 3))  # y part of the world's outputs
        for k in range(n):
            dydv[k * ny:(k + 1) * ny, k * 3:k * 3 + 2] = np.eye(2)
        dEdv = dEdy @ dydv
        gx = np.array([1.0, 1.0, 0.0])[:, None]
        gv = np.array([0.0, 1.0, 0.0])[:, None]
        Sn = shift(n)
        sizes = [n * 3, n, n, nu, d * nv, 1]
        off = np.cumsum([0] + sizes)
        m = off[-1]
        J = np.zeros((m, m))
        blk = lambda i, j, M: J.__setitem__((slice(off[i], off[i + 1]),  # noqa: E731
                                             slice(off[j], off[j + 1])), M)
        # world's outputs: d y^(k)/dt follows the orders above
        Gv = np.kron(Sn, gv @ np.array([[0.0, 0.0, 1.0]]))
        blk(0, 0, Gv)
        blk(0, 1, np.kron(Sn, gx))
        blk(0, 2, np.kron(Sn, np.array([[0.0], [0.0], [1.0]])))
        # world's states
        blk(1, 1, np.kron(np.eye(n), np.array([[-0.25]])))
        dfda = np.zeros((n, 1))
        dfda[0, 0] = fa
        blk(1, 5, dfda)
        blk(2, 2, Sn)
        # recognition
        Du = np.zeros((nu, nu))
        Du[:n * nx, :n * nx] = np.kron(Sn, np.eye(nx))
        Du[n * nx:, n * nx:] = np.kron(shift(d), np.eye(nv))
        blk(3, 0, -dEdu.T @ iS @ dEdv)
        blk(3, 3, Du - dLduu)
        blk(3, 4, -dEdu.T @ iS @ dEdc)
        blk(3, 5, (-dEdu.T @ iS @ dEda)[:, None])
        blk(4, 4, np.kron(shift(d), np.eye(nv)))
        # action
        blk(5, 0, (-dEda @ iG @ dEdv)[None, :])
        blk(5, 3, (-dEda @ iG @ dEdu)[None, :])
        blk(5, 4, (-dEda @ iG @ dEdc)[None, :])
        blk(5, 5, np.array([[-dEda @ iG @ dEda - np.exp(-2.0)]]))
        flow = np.concatenate([(Sn @ vg).ravel(), Sn @ xg, Sn @ cz,
                               Du @ mu - dLdu, (np.kron(shift(d), np.eye(nv)) @ c.ravel()),
                               [dVda]])
        aug = np.zeros((m + 1, m + 1))
        aug[1:, 0] = flow
        aug[1:, 1:] = J
        dz = expm(aug)[1:, 0]
        z = np.concatenate([vg.ravel(), xg, cz, mu, c.ravel(), [a]]) + dz
        v_old = z[off[0]:off[1]].reshape(n, 3)
        x_w = z[off[1]]
        mu = z[off[3]:off[4]]
        a = z[off[5]]
    return {k: np.asarray(v) for k, v in out.items()}


def bump(T: int = N_BINS) -> np.ndarray:
    t = np.arange(1, T + 1)
    return np.exp(-((t - T / 2) ** 2) / 16.0)


def self_generated(target: float, **kw) -> tuple[float, float, dict]:
    """SPM's read-out: the peak of the world's force and, at that bin, the expectation of
    ``x_self`` minus 1.694 conditional SDs (``Sx``, ``Tx`` of ALAP_demo_attenuation)."""
    out = simulate(target * bump(), np.zeros(N_BINS), **kw)
    j = int(np.argmax(out["x_process"]))
    return out["x_process"][j], out["x"][j, 0] - 1.694 * np.sqrt(out["x_var"][j, 0]), out
