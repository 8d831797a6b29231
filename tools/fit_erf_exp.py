"""Polynomial coefficients of the CPU backend's vectorised erf and exp (csrc/cpu/vmath.c).

    .venv-ref/bin/python tools/fit_erf_exp.py      # needs mpmath (a dependency of torch's sympy)

Prints the C arrays that vmath.c holds. Each is an interpolation at Chebyshev nodes computed with
50 significant digits, then rounded to double; the printed maximum relative errors are measured
with the rounded coefficients evaluated in double, on 4,001 points of the interval:

- ERF_P, erf(y) = y * P(y^2) on 0 <= y < 1 (degree 9 in y^2);
- ERFC_R, erfc(y) = exp(-y^2) * R(u) on 1 <= y < 4 with u = (y - 2.5) / 1.5 in [-1, 1] (degree 16);
- EXP_P, exp(r) = P(r) on |r| <= ln(2) / 2 (degree 10).

All three are better than 1e-11, so the float results (erf and exp of a float computed in
double, then rounded once) are the correctly rounded floats except within 1e-11 of a rounding
boundary, and never more than 1 ulp from them.
"""
import mpmath as mp

mp.mp.dps = 50


def interpolate(f, a, b, degree):
    """Coefficients in u = (x - c) / h (c, h: centre and half-width of [a, b]) of the polynomial
    through f at the Chebyshev nodes."""
    n = degree + 1
    c, h = (a + b) / 2, (b - a) / 2
    nodes = [mp.cos(mp.pi * (k + mp.mpf(1) / 2) / n) for k in range(n)]
    A = mp.matrix([[t ** j for j in range(n)] for t in nodes])
    return [float(v) for v in mp.lu_solve(A, mp.matrix([f(c + h * t) for t in nodes]))]


def max_rel_error(f, coef, a, b, to_u, points=4000):
    worst = mp.mpf(0)
    for i in range(points + 1):
        x = a + (b - a) * mp.mpf(i) / points
        u, r = float(to_u(x)), 0.0
        for v in reversed(coef):
            r = r * u + v
        worst = max(worst, abs(mp.mpf(r) / f(x) - 1))
    return float(worst)


def show(name, coef, err, what):
    print(f"/* {what}; max relative error {err:.1e} */")
    print(f"static const double {name}[{len(coef)}] = {{" + ", ".join(f"{v!r}" for v in coef) + "};")


def main() -> None:
    one, four, ln2 = mp.mpf(1), mp.mpf(4), mp.log(2)
    g = lambda t: mp.erf(mp.sqrt(t)) / mp.sqrt(t) if t > 0 else 2 / mp.sqrt(mp.pi)  # noqa: E731
    p = interpolate(g, mp.mpf(0), one, 9)  # centre 1/2, half-width 1/2: convert to powers of t
    p_t = [mp.mpf(0)] * len(p)
    for j, cj in enumerate(p):  # u = 2t - 1
        for k in range(j + 1):
            p_t[k] += cj * mp.binomial(j, k) * 2 ** k * (-1) ** (j - k)
    p_t = [float(v) for v in p_t]
    show("ERF_P", p_t, max_rel_error(g, p_t, mp.mpf(0), one, lambda t: t), "erf(y) / y in powers of y^2, 0 <= y < 1")
    r = lambda y: mp.erfc(y) * mp.exp(y * y)  # noqa: E731
    coef = interpolate(r, one, four, 16)
    show("ERFC_R", coef, max_rel_error(r, coef, one, four, lambda y: (y - mp.mpf(2.5)) / mp.mpf(1.5)),
         "erfc(y) * exp(y^2) in powers of u = (y - 2.5) / 1.5, 1 <= y < 4")
    e = interpolate(mp.exp, -ln2 / 2, ln2 / 2, 10)
    h = float(ln2 / 2)
    e_r = [v / h ** j for j, v in enumerate(e)]
    show("EXP_P", e_r, max_rel_error(mp.exp, e_r, -ln2 / 2, ln2 / 2, lambda x: x), "exp(r), |r| <= ln(2) / 2")


if __name__ == "__main__":
    main()
