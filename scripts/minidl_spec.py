"""minidl's `--arch` specs as PyTorch modules (include/minidl/nn/spec.h is the grammar).

    from minidl_spec import build
    net = build("conv(16,3,pad=1) bn relu res(conv(16,3,pad=1) bn relu conv(16,3,pad=1) bn) relu "
                "globalavgpool flatten linear(10)", input_shape=(3, 32, 32))
    net.load_state_dict(minidl_state_dict, strict=True)

The module tree and its state-dict names are minidl's: an nn.Sequential whose children are
"0", "1", ...; a res(...) block is a Residual with children "body" and, when its body changes
the shape, "proj". A conv or linear right before a normalization has no bias unless it says
bias=true; a projection is a 1x1 conv (or a linear layer) followed by the body's last
normalization layer. Initial values are PyTorch's own (minidl's are drawn from its generator).
"""
import torch
import torch.nn as nn

NORMALIZATIONS = ("bn", "groupnorm", "layernorm")


class Residual(nn.Module):
    """out = body(x) + x, or body(x) + proj(x) when the body changes the shape."""

    def __init__(self, body, proj=None):
        super().__init__()
        self.body = body
        self.proj = proj

    def forward(self, x):
        return self.body(x) + (x if self.proj is None else self.proj(x))


class Gain(nn.Module):
    """minidl's gain(init): y = weight * x, one learnable scalar (SkipInit with init 0)."""

    def __init__(self, init):
        super().__init__()
        self.weight = nn.Parameter(torch.full((1,), float(init)))

    def forward(self, x):
        return x * self.weight


class SpecError(ValueError):
    pass


def parse(spec):
    """[(name, args, body, text)]: args is a list of (key or None, value); body a token list."""
    pos = 0

    def tokens(depth):
        nonlocal pos
        out = []
        while True:
            while pos < len(spec) and spec[pos].isspace():
                pos += 1
            if pos == len(spec):
                if depth:
                    raise SpecError("a block's '(' is never closed")
                return out
            if spec[pos] == ")":
                if not depth:
                    raise SpecError(f"column {pos + 1}: ')' without a matching '('")
                pos += 1
                return out
            start = pos
            while pos < len(spec) and (spec[pos].isalnum() or spec[pos] in "_-"):
                pos += 1
            name = spec[start:pos]
            if not name:
                raise SpecError(f"column {pos + 1}: expected a layer name")
            while pos < len(spec) and spec[pos].isspace():
                pos += 1
            args, body = [], []
            if name == "res":
                if pos == len(spec) or spec[pos] != "(":
                    raise SpecError("res holds layers: res(LAYERS...)")
                pos += 1
                body = tokens(depth + 1)
            elif pos < len(spec) and spec[pos] == "(":
                close = spec.index(")", pos)
                for part in spec[pos + 1:close].split(","):
                    part = part.strip()
                    if not part:
                        continue
                    if "=" in part:
                        k, v = part.split("=", 1)
                        args.append((k.strip(), v.strip()))
                    else:
                        args.append((None, part))
                pos = close + 1
            out.append((name, args, body))

    return tokens(0)


SIGNATURES = {
    "conv": [("out", None), ("kernel", None), ("stride", "1"), ("pad", "0"), ("bias", "auto"), ("groups", "1")],
    "linear": [("out", None), ("bias", "auto")],
    "bn": [("eps", "1e-5"), ("momentum", "0.1")],
    "groupnorm": [("groups", None), ("eps", "1e-5")],
    "layernorm": [("eps", "1e-5")],
    "maxpool": [("kernel", None), ("stride", "0")],
    "avgpool": [("kernel", None), ("stride", "0")],
    "dropout": [("p", "0.5")],
    "globalavgpool": [], "flatten": [], "res": [],
    "gain": [("init", "1")],
}
# minidl's activation table (include/minidl/kernels/activation.h): spec name -> PyTorch module
ACTIVATIONS = {"sigmoid": nn.Sigmoid, "relu": nn.ReLU, "tanh": nn.Tanh, "swish": nn.SiLU}
SIGNATURES.update({name: [] for name in ACTIVATIONS})


def resolve(name, args):
    if name not in SIGNATURES:
        raise SpecError(f"unknown layer '{name}'")
    sig = SIGNATURES[name]
    values, positional = {}, 0
    for k, v in args:
        if k is None:
            k = sig[positional][0]
            positional += 1
        values[k] = v
    for k, default in sig:
        if k not in values:
            if default is None:
                raise SpecError(f"{name} needs '{k}'")
            values[k] = default
    return values


def text_of(token):
    name, args, body = token
    if body:
        return name + "(" + " ".join(text_of(t) for t in body) + ")"
    if not args:
        return name
    return name + "(" + ",".join((f"{k}={v}" if k else v) for k, v in args) + ")"


def build_sequence(tokens, shape):
    """(nn.Sequential, output shape, text of the last normalization token or None)."""
    layers, last_norm = [], None
    for i, (name, args, body) in enumerate(tokens):
        a = resolve(name, args)
        before_norm = i + 1 < len(tokens) and tokens[i + 1][0] in NORMALIZATIONS
        bias = (a.get("bias", "auto") in ("true", "1")) if a.get("bias", "auto") != "auto" else not before_norm
        if name == "conv":
            out, k, s, p, g = (int(a[x]) for x in ("out", "kernel", "stride", "pad", "groups"))
            layers.append(nn.Conv2d(shape[0], out, k, stride=s, padding=p, bias=bias, groups=g))
            shape = (out, (shape[1] + 2 * p - k) // s + 1, (shape[2] + 2 * p - k) // s + 1)
        elif name == "linear":
            out = int(a["out"])
            layers.append(nn.Linear(shape[0], out, bias=bias))
            shape = (out,)
        elif name == "bn":
            cls = nn.BatchNorm1d if len(shape) == 1 else nn.BatchNorm2d
            layers.append(cls(shape[0], eps=float(a["eps"]), momentum=float(a["momentum"])))
        elif name == "groupnorm":
            layers.append(nn.GroupNorm(int(a["groups"]), shape[0], eps=float(a["eps"])))
        elif name == "layernorm":
            layers.append(nn.LayerNorm(list(shape), eps=float(a["eps"])))
        elif name in ("maxpool", "avgpool"):
            k = int(a["kernel"])
            s = int(a["stride"]) or k
            layers.append((nn.MaxPool2d if name == "maxpool" else nn.AvgPool2d)(k, s))
            shape = (shape[0], (shape[1] - k) // s + 1, (shape[2] - k) // s + 1)
        elif name == "globalavgpool":
            layers.append(nn.AdaptiveAvgPool2d(1))
            shape = (shape[0], 1, 1)
        elif name == "flatten":
            layers.append(nn.Flatten())
            n = 1
            for d in shape:
                n *= d
            shape = (n,)
        elif name in ACTIVATIONS:
            layers.append(ACTIVATIONS[name]())
        elif name == "gain":
            layers.append(Gain(float(a["init"])))
        elif name == "dropout":
            layers.append(nn.Dropout(float(a["p"])))
        elif name == "res":
            inner, out_shape, norm = build_sequence(body, shape)
            proj = None
            if tuple(out_shape) != tuple(shape):
                if len(shape) == 3 and len(out_shape) == 3:
                    stride = next((s for s in range(1, shape[1] + 1) if (shape[1] - 1) // s + 1 == out_shape[1]), 0)
                    if not stride or (shape[2] - 1) // stride + 1 != out_shape[2]:
                        raise SpecError(f"res: no 1x1 convolution maps {shape} onto {out_shape}")
                    proj_spec = f"conv({out_shape[0]},1,stride={stride})"
                elif len(shape) == 1 and len(out_shape) == 1:
                    proj_spec = f"linear({out_shape[0]})"
                else:
                    raise SpecError("res: a residual block keeps the rank")
                if norm:
                    proj_spec += " " + norm
                proj, _, _ = build_sequence(parse(proj_spec), shape)
            layers.append(Residual(inner, proj))
            shape = out_shape
        if name in NORMALIZATIONS:
            last_norm = text_of((name, args, body))
    return nn.Sequential(*layers), tuple(shape), last_norm


def build(spec, input_shape=(1, 28, 28), classes=None):
    """The nn.Sequential of `spec` for one example of `input_shape` (C, H, W)."""
    net, shape, _ = build_sequence(parse(spec), tuple(input_shape))
    if classes is not None and shape != (classes,):
        raise SpecError(f"the model ends with {shape}; it must end with {classes} logits")
    return net


def without(spec, layer):
    """The spec without the tokens named `layer`, at any depth (minidl's spec_without)."""
    def strip(tokens):
        return [(n, a, strip(b)) for n, a, b in tokens if n != layer]
    return " ".join(text_of(t) for t in strip(parse(spec)))


if __name__ == "__main__":
    import sys
    shape = tuple(int(x) for x in sys.argv[2].split(",")) if len(sys.argv) > 2 else (1, 28, 28)
    print(build(sys.argv[1], shape))
