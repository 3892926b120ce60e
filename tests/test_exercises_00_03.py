"""The exercise checks of lessons 00-03: each solution gets ✓, and the mistake a student would
really make gets ✗ with words that say what is off (named in each case)."""

from __future__ import annotations

import pytest
import torch

from course_utils import checks, optvis
from course_utils.hooks import capture
from course_utils.models import load_model
from course_utils.scenes import CLASSES, make_scenes
from tests.conftest import assert_same_state, model_state


@pytest.fixture(scope="module")
def course():
    return load_model("course")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Lesson 03's checks run hundreds of tiny steps: one thread does them several times faster."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def line(capsys) -> str:
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1, out  # one line, always
    return out[0]


def verdicts(capsys, check, cases):
    """``{case: the line check(answer) printed}`` for each ``case: answer``."""
    found = {}
    for case, answer in cases.items():
        check(answer)
        found[case] = line(capsys)
    return found


# --- lesson 00 ---


def preprocess(image):
    x = (torch.from_numpy(image).float() / 255 - 0.5) / 0.25
    return x.permute(2, 0, 1).unsqueeze(0)


def test_preprocess_check(capsys, course):
    got = verdicts(capsys, checks.check_preprocess_function, {
        "solution": preprocess,
        "not answered": None,
        "returns None": lambda image: None,
        "view instead of permute": lambda image: ((torch.from_numpy(image).float() / 255 - 0.5) / 0.25).view(
            1, 3, *image.shape[:2]),
        "forgot the mean and std": lambda image: torch.from_numpy(image).float().permute(2, 0, 1)[None] / 255,
        "channels last": lambda image: ((torch.from_numpy(image).float() / 255 - 0.5) / 0.25)[None],
        "course.batch": lambda image: course.batch([image]),
        "raises": lambda image: image.permute(2, 0, 1),  # a NumPy array has no permute
    })
    assert got["solution"] == "✓ preprocessing: right on a new 5×7 image"
    assert got["not answered"].startswith("… preprocessing") and got["returns None"].startswith("… preprocessing")
    assert "✗" in got["view instead of permute"] and "permute(2, 0, 1), not view" in got["view instead of permute"]
    assert "✗" in got["forgot the mean and std"] and "subtract the mean 0.5" in got["forgot the mean and std"]
    assert "colours are last" in got["channels last"]
    assert got["course.batch"].startswith("✗ preprocessing: your function calls batch")
    assert got["raises"].startswith("✗ preprocessing: your code raised AttributeError")


def stable_softmax(logits):
    shifted = logits - logits.max(dim=1, keepdim=True).values
    return shifted.exp() / shifted.exp().sum(dim=1, keepdim=True)


def test_softmax_check(capsys):
    got = verdicts(capsys, checks.check_softmax_function, {
        "solution": stable_softmax,
        "no shift: overflow": lambda z: z.exp() / z.exp().sum(dim=1, keepdim=True),
        "one max for the batch": lambda z: (z - z.max()).exp() / (z - z.max()).exp().sum(dim=1, keepdim=True),
        "sums the columns": lambda z: (z - z.max(dim=1, keepdim=True).values).exp() / (
            z - z.max(dim=1, keepdim=True).values).exp().sum(dim=0, keepdim=True),
        "torch's softmax": lambda z: z.softmax(dim=1),
        "F.log_softmax": lambda z: torch.nn.functional.log_softmax(z, dim=1).exp(),
    })
    assert got["solution"].startswith("✓ softmax")
    assert "overflows" in got["no shift: overflow"]
    assert "each row's own maximum" in got["one max for the batch"]
    assert "columns sum to 1" in got["sums the columns"]
    assert got["torch's softmax"].startswith("✗ softmax: your function calls softmax")
    assert got["F.log_softmax"].startswith("✗ softmax: your function calls log_softmax")


def test_softmax_check_works_out_the_last_row_by_hand(capsys):
    def off_in_the_last_row(z):
        p = stable_softmax(z)
        p[2] = torch.tensor([0.2, 0.3, 0.5])
        return p

    checks.check_softmax_function(off_in_the_last_row)
    assert line(capsys) == "✗ softmax: logits [0, ln 3, ln 4] should give [1/8, 3/8, 1/2], yours gave [0.2, 0.3, 0.5]"


# --- lesson 01 ---


def conv3_through_hook(model, x):
    return _hook_on(model.features.conv3, model, x)


def no_finally(model, x):
    store = {}
    handle = model.features.conv3.register_forward_hook(lambda m, i, out: store.update(out=out.detach().clone()))
    with torch.no_grad():
        model(x)
    handle.remove()
    return store["out"]


def never_removed(model, x):
    store = {}
    model.features.conv3.register_forward_hook(lambda m, i, out: store.update(out=out.detach().clone()))
    with torch.no_grad():
        model(x)
    return store["out"]


def _hook_on(module, model, x):
    store = {}
    handle = module.register_forward_hook(lambda m, i, out: store.update(out=out.detach().clone()))
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    return store["out"]


def test_hook_check_counts_hooks_left_in_its_verdict(capsys, course):
    before = model_state(course.model)
    global_model = course.model
    got = verdicts(capsys, lambda fn: checks.check_hook_function(fn, course.model), {
        "solution": conv3_through_hook,
        "no finally": no_finally,
        "never removed": never_removed,
        "hooks relu3": lambda model, x: _hook_on(model.features.relu3, model, x),
        "ignores the model it is given": lambda model, x: conv3_through_hook(global_model, x.to("cpu")),
    })
    assert got["solution"] == ("✓ conv3 through your hook: right on new scenes and on an untrained model; "
                               "no hook left, also after a failed pass")
    assert got["no finally"].startswith("✗") and "when the forward pass fails" in got["no finally"]
    assert got["never removed"].startswith("✗") and "leaves 1 hook on the model" in got["never removed"]
    assert "output of features.relu3, not of features.conv3" in got["hooks relu3"]
    ignores = got["ignores the model it is given"]
    assert ignores.startswith("✗") and "on an untrained model your function does not return features.conv3's output" in ignores
    assert_same_state(before, model_state(course.model))  # every hook the wrong answers left was taken off


def test_hook_check_refuses_capture(capsys, course):
    def with_capture(model, x):
        with capture(model, "features.conv3") as acts, torch.no_grad():
            model(x)
        return acts["features.conv3"]

    checks.check_hook_function(with_capture, course.model)
    assert line(capsys).startswith("✗ conv3 through your hook: your function calls capture")


def most_selective(model, x, is_target, layer):
    with torch.no_grad(), capture(model, layer) as acts:
        model(x)
    means = acts[layer].mean(dim=(2, 3))
    return int((means[is_target].mean(0) - means[~is_target].mean(0)).argmax())


def test_selective_channel_check(capsys, course):
    def most_active(model, x, is_target, layer):  # forgets to compare with the other images
        with torch.no_grad(), capture(model, layer) as acts:
            model(x)
        return int(acts[layer].mean(dim=(2, 3))[is_target].mean(0).argmax())

    got = verdicts(capsys, lambda fn: checks.check_selective_channel_function(fn, course.model), {
        "solution": most_selective,
        "most active on the targets": most_active,
        "others minus targets": lambda model, x, t, layer: most_selective(model, x, ~t, layer),
        "a tensor, not an int": lambda model, x, t, layer: torch.tensor([1, 2]),
    })
    assert got["solution"].startswith("✓ most selective channel")
    assert got["most active on the targets"].startswith("✗") and "subtract its mean over the other images" in got[
        "most active on the targets"]
    assert "OTHER images" in got["others minus targets"]
    assert "give one channel number" in got["a tensor, not an int"]


def test_the_star_channel_is_lesson_03s_unit(course):
    pool = make_scenes(60, seed=7)
    is_star = torch.from_numpy(pool.labels[:, 0] == CLASSES.index("star"))
    assert most_selective(course.model, course.batch(list(pool.images)), is_star, "features.relu5") == 30


def minmax(maps):
    lo = maps.amin(dim=(1, 2), keepdim=True)
    span = maps.amax(dim=(1, 2), keepdim=True) - lo
    return torch.where(span > 0, (maps - lo) / span.clamp(min=1e-12), torch.zeros_like(maps))


def test_minmax_check(capsys):
    got = verdicts(capsys, checks.check_minmax_function, {
        "solution": minmax,
        "0 / 0 for a constant channel": lambda m: (m - m.amin(dim=(1, 2), keepdim=True)) / (
            m.amax(dim=(1, 2), keepdim=True) - m.amin(dim=(1, 2), keepdim=True)),
        "one scale for all channels": lambda m: (m - m.min()) / (m.max() - m.min()),
        "divides by the max only": lambda m: m / m.amax(dim=(1, 2), keepdim=True).clamp(min=1e-12),
        "constant channel to one half": lambda m: torch.where(
            m.amax(dim=(1, 2), keepdim=True) == m.amin(dim=(1, 2), keepdim=True), 0.5, minmax(m)),
    })
    assert got["solution"] == "✓ per-channel min-max: right on new channels, constant ones included"
    assert "gives NaN" in got["0 / 0 for a constant channel"]
    assert "stretched all channels together" in got["one scale for all channels"]
    assert "subtract its minimum" in got["divides by the max only"]
    assert "should be 0 (black); yours gave 0.5" in got["constant channel to one half"]


# --- lesson 02 ---


def test_filter_norms_check(capsys):
    got = verdicts(capsys, checks.check_filter_norms_function, {
        "solution": lambda w: w.flatten(1).pow(2).sum(dim=1).sqrt(),
        "no square root": lambda w: w.flatten(1).pow(2).sum(dim=1),
        "L1": lambda w: w.flatten(1).abs().sum(dim=1),
        "one norm per slice": lambda w: w.pow(2).sum(dim=(2, 3)).sqrt(),
        "filters.filter_norms": lambda w: __import__("course_utils").filters.filter_norms(w),
    })
    assert got["solution"] == "✓ filter norms: right on new weights"
    assert "squared norms: take the square root" in got["no square root"]
    assert "L1 norm" in got["L1"]
    assert "shape (4, 2)" in got["one norm per slice"] and "over all its slices" in got["one norm per slice"]
    assert got["filters.filter_norms"].startswith("✗ filter norms: your function calls filter_norms")


def test_conv_params_check(capsys):
    got = verdicts(capsys, checks.check_conv_params_function, {
        "solution": lambda shape: shape[0] * shape[1] * shape[2] * shape[3] + shape[0],
        "no biases": lambda shape: shape[0] * shape[1] * shape[2] * shape[3],
        "a bias per input channel": lambda shape: shape[0] * shape[1] * shape[2] * shape[3] + shape[1],
        "numel": lambda shape: shape.numel() + shape[0],
    })
    assert got["solution"] == "✓ parameters of a convolution: right for three new shapes"
    assert "(8, 3, 5, 5)" in got["no biases"] and "not the biases" in got["no biases"]
    assert "not per input channel" in got["a bias per input channel"]
    assert got["numel"].startswith("✗ parameters of a convolution: your function calls numel")


def opponency(w):
    s = w.sum(dim=(2, 3))
    return torch.minimum(s.max(dim=1).values, -s.min(dim=1).values).clamp(min=0)


def test_opponency_checks(capsys, course):
    got = verdicts(capsys, checks.check_opponency_function, {
        "solution": opponency,
        "no floor at 0": lambda w: torch.minimum(w.sum(dim=(2, 3)).amax(1), -w.sum(dim=(2, 3)).amin(1)),
        "max - min": lambda w: w.sum(dim=(2, 3)).amax(1) - w.sum(dim=(2, 3)).amin(1),
        "sums over the colours": lambda w: w.sum(dim=1),
    })
    assert got["solution"] == "✓ opponency scores: right on new filters"
    assert "floor the score at 0" in got["no floor at 0"]
    assert "max − min" in got["max - min"]
    assert "dim=(2, 3)" in got["sums over the colours"]
    w1 = course.model.features.conv1.weight.detach()
    right = int(opponency(w1).argmax())
    loudest = int(w1.sum(dim=(2, 3)).abs().amax(1).argmax())  # the strongest colour response, not the opposition
    assert right == 9 and loudest != right
    got = verdicts(capsys, lambda k: checks.check_most_opponent_filter(k, course.model),
                   {"solution": torch.tensor(right), "strongest sum": loudest, "not answered": None})
    assert got == {"solution": "✓ most colour-opponent filter: right",
                   "strongest sum": f"✗ most colour-opponent filter: filter {loudest} scores "
                                    f"{float(opponency(w1)[loudest]):.2f}; another filter scores higher",
                   "not answered": "… most colour-opponent filter: not answered yet (replace the None)"}


# --- lesson 03 ---


def start_image(seed=0):
    noise = torch.randn((1, 3, 64, 64), generator=torch.Generator().manual_seed(seed))
    return (0.5 + 0.05 * noise).clamp(0, 1).requires_grad_(True)


def ascent(model, layer, score_of, steps, lr, sign=-1.0, record_after=False, l2=0.0, blur_every=0, sigma=1.0):
    """Lesson 03's loop, with the switches its wrong answers flip."""
    x = start_image()
    opt = torch.optim.Adam([x], lr=lr)
    history = []
    for step in range(steps):
        with capture(model, layer, detach=False) as acts:
            model((x - 0.5) / 0.25)
        score = score_of(acts[layer])
        (grad,) = torch.autograd.grad(score - l2 * (x - 0.5).pow(2).sum(), x)
        x.grad = sign * grad
        opt.step()
        with torch.no_grad():
            if blur_every and (step + 1) % blur_every == 0:
                x.copy_(optvis.gaussian_blur(x, sigma))
            x.clamp_(0, 1)
        if record_after:
            with torch.no_grad(), capture(model, layer) as after:
                model((x - 0.5) / 0.25)
            score = score_of(after[layer])
        history.append(score.item())
    return history, x.detach()


def centre(c):
    return lambda a: a[0, c, a.shape[2] // 2, a.shape[3] // 2]


def test_neuron_ascent_check(capsys, course):
    before = model_state(course.model)

    def backward_with_grad(model, layer, c, steps, lr):  # .backward() writes the parameters' .grad
        x = start_image()
        opt = torch.optim.Adam([x], lr=lr)
        history = []
        for _ in range(steps):
            with capture(model, layer, detach=False) as acts:
                model((x - 0.5) / 0.25)
            score = centre(c)(acts[layer])
            opt.zero_grad()
            (-score).backward()
            opt.step()
            history.append(score.item())
        return history

    got = verdicts(capsys, lambda fn: checks.check_neuron_ascent_function(fn, course), {
        "solution": lambda m, layer, c, steps, lr: ascent(m, layer, centre(c), steps, lr)[0],
        "hands Adam the gradient itself": lambda m, layer, c, steps, lr: ascent(m, layer, centre(c), steps, lr,
                                                                                 sign=1.0)[0],
        "records after the step": lambda m, layer, c, steps, lr: ascent(m, layer, centre(c), steps, lr,
                                                                         record_after=True)[0],
        "the centre of a 16x16 map, hard-coded": lambda m, layer, c, steps, lr: ascent(
            m, layer, lambda a: a[0, c, 8, 8], steps, lr)[0],
        "calls visualize": lambda m, layer, c, steps, lr: optvis.visualize(m, optvis.neuron(layer, c), steps=steps,
                                                                           lr=lr, mean=0.5, std=0.25).history,
        ".backward()": backward_with_grad,
    })
    assert got["solution"].startswith("✓ neuron ascent: your loop gives visualize's scores on a new neuron")
    assert "hand it minus the gradient" in got["hands Adam the gradient itself"]
    assert "one step ahead" in got["records after the step"]
    assert "your first score is" in got["the centre of a 16x16 map, hard-coded"]
    assert got["calls visualize"].startswith("✗ neuron ascent: your function calls visualize")
    assert "wrote .grad on the model's parameters" in got[".backward()"]
    assert_same_state(before, model_state(course.model))


def hf_energy(image):
    dx = image[..., :, 1:] - image[..., :, :-1]
    dy = image[..., 1:, :] - image[..., :-1, :]
    return (dx.pow(2).mean() + dy.pow(2).mean()).item()


def test_hf_energy_check(capsys):
    got = verdicts(capsys, checks.check_hf_energy_function, {
        "solution": hf_energy,
        "across only": lambda im: (im[..., :, 1:] - im[..., :, :-1]).pow(2).mean(),
        "sums": lambda im: ((im[..., :, 1:] - im[..., :, :-1]).pow(2).sum()
                            + (im[..., 1:, :] - im[..., :-1, :]).pow(2).sum()),
        "absolute differences": lambda im: (im[..., :, 1:] - im[..., :, :-1]).abs().mean() + (
            im[..., 1:, :] - im[..., :-1, :]).abs().mean(),
        "optvis": lambda im: optvis.high_frequency_energy(im),
    })
    assert got["solution"] == "✓ high-frequency energy: right on four new images"
    assert got["across only"] == ("✗ high-frequency energy: the same ramp down the rows should give 0.25, "
                                  "yours gave 0: "
                                  "add the squared differences down the rows too")
    assert "that is a sum" in got["sums"]
    assert "square the differences" in got["absolute differences"]
    assert "your function calls high_frequency_energy" in got["optvis"]


def test_hf_change_check(capsys, course):
    def run(transforms):
        return optvis.visualize(course, optvis.channel("features.relu5", 30), steps=128, transforms=transforms,
                                progress=False).images

    change = hf_energy(run(optvis.jitter(2))) - hf_energy(run(None))
    got = verdicts(capsys, lambda v: checks.check_hf_change(v, course), {"solution": change, "flipped": -change})
    assert got["solution"].startswith("✓ change in high-frequency energy")
    assert "the sign is flipped" in got["flipped"]


def test_regularized_ascent_check(capsys, course):
    def loop(**switches):
        def fn(model, layer, c, steps, lam, blur_every, sigma):
            settings = dict(l2=lam, blur_every=blur_every, sigma=sigma, **switches)
            return ascent(model, layer, lambda a: a[0, c].mean(), steps, 0.05, **settings)[1]
        return fn

    got = verdicts(capsys, lambda fn: checks.check_regularized_ascent_function(fn, course), {
        "solution": loop(),
        "no blur": lambda *args: loop()(*args[:5], 0, args[6]),
        "no L2": lambda model, layer, c, steps, lam, blur_every, sigma: loop()(model, layer, c, steps, 0.0,
                                                                               blur_every, sigma),
    })
    assert got["solution"].startswith("✓ L2 + blur ascent: your loop gives visualize's image on a new case")
    assert "the blur never happened" in got["no blur"]
    assert "the L2 term has no effect" in got["no L2"]
