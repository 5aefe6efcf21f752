"""Shared numerical helpers for the bundled aggregators (private).

All solvers work on a *normalised* Gramian (float64 numpy, mean diagonal 1), so that gradient
scales from 1e-8 to 1e8 reach them as the same well-scaled problem; the weights they return are
scale-free and the caller forms ``d = w^T J`` in the original scale.

Thread pools: the K x K problems (K <= 40) gain nothing from threads, while NumPy/SciPy's BLAS
pools would compete with torch's own threads for the same cores (oversubscription). Every
solver entry point runs under :func:`single_threaded` (threadpoolctl, BLAS pools limited to one
thread for the duration of the solve, ~10 µs; torch's pools are not touched).
"""

from __future__ import annotations

import contextlib
import functools
import math
import sys
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import numpy as np
import torch

from mtlkit.errors import ConfigError, GradientError, invalid_value

_F = TypeVar("_F", bound=Callable[..., Any])
_CONTROLLER: list[Any] = []


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    """Limit NumPy/SciPy's BLAS thread pools to one thread while the block runs."""
    # The controller lists the BLAS libraries loaded when it is built (~5 ms); a library
    # loaded later (another package's BLAS) would escape it, so it is rebuilt whenever the
    # set of imported modules has grown (one len() per solve otherwise).
    loaded = len(sys.modules)
    if not _CONTROLLER or _CONTROLLER[0][0] != loaded:
        import scipy.linalg  # noqa: F401  (SciPy's own OpenBLAS must be loaded to be seen)
        from threadpoolctl import ThreadpoolController

        _CONTROLLER[:] = [(len(sys.modules), ThreadpoolController())]
    with _CONTROLLER[0][1].limit(limits=1, user_api="blas"):
        yield


def bounded_threads(method: _F) -> _F:
    """Run ``method`` under :func:`single_threaded` (for ``weights`` of the solver methods)."""

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with single_threaded():
            return method(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


#: Ridge added to the normalised Gramian before a QP that needs positive definiteness. Small
#: enough that the answer moves by ~1e-10 relative, large enough for quadprog's Cholesky on a
#: rank-deficient Gramian.
RIDGE = 1e-10
#: Duality-gap tolerance (normalised units) below which a min-norm solution is accepted.
GAP_TOL = 1e-8


def as_normalized_numpy(G: torch.Tensor) -> tuple[np.ndarray, float]:
    """``(G / s, s)`` in float64 numpy with ``s`` the mean diagonal, repaired to be PSD.

    A Gramian computed in float32 (or from nearly dependent rows) is only PSD up to round-off:
    eigenvalues of ``-1e-7`` make QP solvers fail or return garbage, so negative eigenvalues are
    clipped to 0 (one K x K eigendecomposition). ``s = 0`` (all-zero gradients, which the base
    class already short-cuts) returns ``s = 1``.
    """
    A, scale, _ = _normalize(G)
    return A, scale


def as_normalized_eigh(G: torch.Tensor
                       ) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """:func:`as_normalized_numpy` plus ``(λ, V) = eigh(A)`` of the returned ``A``, reusing
    the repair's eigendecomposition when ``A`` needed no repair (the usual case)."""
    A, scale, eig = _normalize(G)
    lam, V = eig if eig is not None else np.linalg.eigh(A)
    return A, scale, lam, V


def _normalize(G: torch.Tensor
               ) -> tuple[np.ndarray, float, tuple[np.ndarray, np.ndarray] | None]:
    """``(A, s, eigh(A))``; the last is ``None`` where ``A`` is not the matrix decomposed."""
    A = G.detach().to(device="cpu", dtype=torch.float64).numpy()
    A = 0.5 * (A + A.T)  # float32 matmuls are not exactly symmetric
    scale = float(np.mean(np.diag(A)))
    if not math.isfinite(scale) or scale <= 0.0:
        return A, 1.0, None
    A = A / scale
    lam, V = np.linalg.eigh(A)
    if lam.min() < 0.0:
        A = (V * np.clip(lam, 0.0, None)) @ V.T
        A = 0.5 * (A + A.T)
        return A, scale, None
    return A, scale, (lam, V)


def eigen_cutoff(dtype: torch.dtype, K: int) -> float:
    """Relative eigenvalue cut-off for rank decisions on a Gramian computed in ``dtype``.

    A float32 Gramian carries ~1e-7..1e-5 relative error (sums over n products), so its
    "zero" eigenvalues of a rank-deficient J come out near 1e-7 λ_max: inverting them would
    amplify noise by 1e7. float64 keeps 1e-12 (times K).
    """
    return 1e-5 if dtype in (torch.float32, torch.float16, torch.bfloat16) else K * 1e-12


def require_quadprog(who: str) -> Any:
    try:
        import quadprog
    except ImportError as exc:  # pragma: no cover - quadprog is a base dependency
        raise ConfigError(
            f"{who} needs the quadprog QP solver, a dependency of mtlkit that is missing from "
            "this environment: pip install quadprog (or choose solver='frank_wolfe' where "
            "offered)") from exc
    return quadprog


def min_norm_2(G: np.ndarray) -> np.ndarray:
    """Exact min-norm point of the segment [g1, g2]: ``w = (γ, 1-γ)``.

    ``γ = clip((G22 - G12) / (G11 + G22 - 2 G12), 0, 1)`` (Sener & Koltun 2018, Alg. 1).
    """
    denom = G[0, 0] + G[1, 1] - 2.0 * G[0, 1]
    # g1 == g2 (denom 0): every point of the segment is the same vector
    gamma = 0.5 if denom <= 1e-300 else float(np.clip((G[1, 1] - G[0, 1]) / denom, 0.0, 1.0))
    return np.array([gamma, 1.0 - gamma])


def simplex_gap(G: np.ndarray, w: np.ndarray) -> float:
    """Frank-Wolfe duality gap of ``min_{w in simplex} w^T G w`` (0 at the optimum)."""
    Gw = G @ w
    return float(w @ Gw - Gw.min())


def min_norm_qp(G: np.ndarray) -> np.ndarray:
    """Exact min-norm point of the convex hull by a dense QP (quadprog, Goldfarb-Idnani)."""
    quadprog = require_quadprog("the min-norm (MGDA) solver")
    K = G.shape[0]
    P = G + RIDGE * np.eye(K)
    C = np.concatenate([np.ones((K, 1)), np.eye(K)], axis=1)  # sum w = 1, w >= 0
    b = np.concatenate([[1.0], np.zeros(K)])
    w = quadprog.solve_qp(P, np.zeros(K), C, b, meq=1)[0]
    w = np.clip(w, 0.0, None)
    return w / w.sum()


def min_norm_frank_wolfe(G: np.ndarray, max_iter: int = 10_000,
                         tol: float = GAP_TOL) -> np.ndarray:
    """Frank-Wolfe with exact line search (the solver of Sener & Koltun, Alg. 2)."""
    K = G.shape[0]
    w = np.full(K, 1.0 / K)
    for _ in range(max_iter):
        Gw = G @ w
        t = int(np.argmin(Gw))
        if float(w @ Gw - Gw[t]) <= tol:
            break
        # exact line search on the segment between w (point Jw) and vertex t
        a, b, c = float(w @ Gw), float(Gw[t]), float(G[t, t])
        denom = a - 2.0 * b + c
        gamma = 1.0 if denom <= 0 else float(np.clip((a - b) / denom, 0.0, 1.0))
        w = (1.0 - gamma) * w
        w[t] += gamma
    return w


def min_norm_weights(G: np.ndarray, solver: str = "qp") -> np.ndarray:
    """Weights of the min-norm point of conv{g_k} for a normalised Gramian; verified.

    K = 2 uses the closed form; otherwise ``solver`` ("qp" exact, or "frank_wolfe"). The
    answer is checked by its duality gap; an unconverged answer raises instead of being used.
    """
    K = G.shape[0]
    if K == 1:
        return np.ones(1)
    if K == 2:
        return min_norm_2(G)
    try:
        w = min_norm_qp(G) if solver == "qp" else min_norm_frank_wolfe(G)
    except ValueError:  # quadprog: "matrix G is not positive definite" on extreme inputs
        w = min_norm_frank_wolfe(G)
    gap = simplex_gap(G, w)
    if gap > GAP_TOL * max(1.0, float(np.max(np.diag(G)))):
        # quadprog may stop early on a nearly singular Gramian: try the other solver before
        # giving up.
        try:
            w2 = min_norm_frank_wolfe(G) if solver == "qp" else min_norm_qp(G)
        except ValueError:
            w2 = w
        gap2 = simplex_gap(G, w2)
        if gap2 < gap:
            w, gap = w2, gap2
    if gap > 1e3 * GAP_TOL * max(1.0, float(np.max(np.diag(G)))):
        raise GradientError(
            f"min-norm solver did not converge (duality gap {gap:.3g} on the normalised "
            f"Gramian, K={K}); refusing to return an inexact direction")
    return w


def stationarity_screen(A: np.ndarray, dtype: torch.dtype
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The bargaining methods' common first step (Nash-MTL, FairGrad) on a normalised Gramian.

    Returns ``(active, B, mgda)``: the tasks with a non-negligible gradient (zero-gradient tasks
    are indifferent and get weight 0), their Gramian and its min-norm weights; or ``None``
    when no update exists: no active task, or the active tasks are Pareto-stationary within
    the Gramian's precision (a float32 Gramian carries ~1e-7 relative error, so a min-norm²
    below the dtype's cut-off is indistinguishable from 0).
    """
    K = A.shape[0]
    active = np.diag(A) > eigen_cutoff(dtype, K) * float(np.max(np.diag(A)))
    m = int(active.sum())
    if m == 0:
        return None
    B = A[np.ix_(active, active)]
    mgda = min_norm_weights(B, "qp")
    if float(mgda @ B @ mgda) <= eigen_cutoff(dtype, m):
        return None
    return active, B, mgda


def project_dual_cone(G: np.ndarray, lower: np.ndarray,
                      P: np.ndarray | None = None) -> np.ndarray:
    """``argmin_{w >= lower} w^T G w`` (weights of the projection of ``lower^T J`` onto the
    dual cone ``{x : J x >= 0}``; Quinton & Rey 2024, Prop. 1), by quadprog.

    ``P`` is the ridged ``G + RIDGE·I`` the QP is solved on, for a caller that solves several
    QPs on one Gramian (UPGrad); computed here when not given.
    """
    quadprog = require_quadprog("the dual-cone projection (UPGrad)")
    K = G.shape[0]
    if P is None:
        P = G + RIDGE * np.eye(K)
    w = quadprog.solve_qp(P, np.zeros(K), np.eye(K), lower, meq=0)[0]
    return np.maximum(w, lower)


def dual_cone_projections(A: np.ndarray, lowers: np.ndarray,
                          ridge: float = RIDGE) -> list[np.ndarray]:
    """Weights of the projections of ``u^T J`` onto the dual cone ``{x : J x >= 0}``, one per
    row ``u`` of ``lowers``, on the (normalised) Gramian ``A`` (UPGrad: the K unit vectors;
    DualProj: the mean's ``1/K``). The shared set-up of both methods.

    A ``u`` already in the cone (``A u >= 0``) is its own projection and is returned as is:
    without any conflict the answer is exact, not a QP's approximation. The others are solved
    by :func:`project_dual_cone` on one ridged matrix ``A + ridge·I``.
    """
    P = A + ridge * np.eye(A.shape[0])
    return [u if bool((A @ u >= 0).all()) else project_dual_cone(A, u, P) for u in lowers]


def check_choice(field: str, value: object, allowed: tuple[object, ...]) -> None:
    if value not in allowed:
        raise invalid_value(field, value, "allowed: " + ", ".join(repr(a) for a in allowed))


def check_range(field: str, value: float, lo: float, hi: float, *, lo_open: bool = False,
                hi_open: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > lo if lo_open else value >= lo) and (value < hi if hi_open else value <= hi)
    if not ok:
        left = "(" if lo_open else "["
        right = ")" if hi_open else "]"
        raise invalid_value(field, value, f"must be a number in {left}{lo}, {hi}{right}")


def make_generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def pick_generator(context: dict[str, Any], own: torch.Generator) -> torch.Generator:
    """The trainer's seeded generator when given, else the aggregator's own seeded one."""
    gen = context.get("generator")
    return gen if isinstance(gen, torch.Generator) else own


def to_weights(w: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(w), dtype=torch.float64)


def losses_vector(losses: object, K: int | None, who: str) -> torch.Tensor:
    t = torch.as_tensor(losses).detach().to(dtype=torch.float64, device="cpu").flatten()
    if K is not None and t.numel() != K:
        raise invalid_value(f"{who} losses", tuple(t.shape), f"need one loss per task ({K})")
    if not bool(torch.isfinite(t).all()):
        raise GradientError(f"{who}: non-finite task loss {t.tolist()}")
    return t


def project_simplex(v: np.ndarray) -> np.ndarray:
    """Euclidean projection ``argmin_{w in Δ_K} ‖w - v‖`` onto the probability simplex.

    The sort-based exact algorithm (Held et al. 1974; Duchi et al. 2008): with ``u`` sorted
    decreasingly, ``r = max{j : u_j > (Σ_{i<=j} u_i - 1)/j}`` and ``θ = (Σ_{i<=r} u_i - 1)/r``,
    ``w = max(v - θ, 0)``. Used by the stochastic simplex-weight methods (MoDo, SDMGrad, MoCo).
    """
    v = np.asarray(v, dtype=np.float64)
    # Π(v + c·1) = Π(v): shifting the largest entry to 0 keeps huge inputs exact (u_1 = 0 >
    # -1 then always holds, so r >= 1, and tied maxima share the mass instead of each taking 1)
    v = v - v.max()
    u = np.sort(v)[::-1]
    css = np.cumsum(u) - 1.0
    j = np.arange(1, v.size + 1)
    r = int(np.nonzero(u > css / j)[0][-1]) + 1
    return np.maximum(v - css[r - 1] / r, 0.0)
