"""The known rules as plain strings: the hand-designed optimizers and the ones the NOS
paper discovered.  Pure data (no imports), so the parser can name a known rule used
inside a rule; :mod:`evo_nos.core.known` parses them into Rules."""

_S = "mul(sign_g, sign_m)"  # +1 where g and m agree in sign, -1 where they disagree

KNOWN_STRINGS: dict[str, str] = {
    # hand-designed
    "sgd": "g",
    "signsgd": "sign_g",
    "momentum": "m",
    "adam": "adam",
    "rmsprop": "rmsprop",
    # PowerSign: exp(decay · sign(g)·sign(m)) · g   (TensorFlow's PowerSignOptimizer)
    "powersign": f"mul(exp({_S}), g)",
    "powersign-ld": f"mul(exp(mul(ld, {_S})), g)",
    "powersign-cd": f"mul(exp(mul(cd, {_S})), g)",
    "powersign-rd": f"mul(exp(mul(rd, {_S})), g)",
    "powersign2": f"mul(pow(2, {_S}), g)",
    # AddSign: (alpha + decay · sign(g)·sign(m)) · g   (TensorFlow's AddSignOptimizer)
    "addsign": f"mul(add(1, {_S}), g)",
    "addsign-ld": f"mul(add(1, mul(ld, {_S})), g)",
    "addsign-cd": f"mul(add(1, mul(cd, {_S})), g)",
    "addsign-rd": f"mul(add(1, mul(rd, {_S})), g)",
    "addsign2": f"mul(add(2, {_S}), g)",
    # the paper's table of discovered rules (Wide ResNet transfer experiment)
    "nos-1": f"mul(add(exp({_S}), clip4(g)), g)",
    "nos-2": "mul(clip4(m), exp(v))",
    "nos-3": "mul(m, exp(v))",
    "nos-4": f"mul(drop3(g), exp({_S}))",
    "nos-5": "mul(m, exp(g2))",
    "nos-6": "div(drop1(m), exp(g2))",
    "nos-7": "add(clip5(rmsprop), drop3(m))",
    "nos-8": f"mul(adam, exp({_S}))",
    "nos-9": "mul(adam, exp(m))",
    "nos-10": "add(g, drop3(m))",
    "nos-11": "mul(drop1(m), exp(g3))",
    "nos-12": "sub(g, clip4(g2))",
    "nos-13": "sub(exp(g), exp(m))",
    "nos-14": "mul(drop3(m), exp(w3))",
}

# The rules every comparison shows beside the searched ones.
REFERENCE_NAMES = (
    "sgd", "momentum", "adam", "rmsprop", "signsgd", "powersign", "addsign",
    "powersign-ld", "addsign-ld",
)
