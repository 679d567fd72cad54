"""SyncWorld scene: objects falling and bouncing, with an impact sound at every contact.

1-3 objects of one shape and material drop (some enter from above the frame),
bounce off the floor and the side walls under gravity and come to rest. Motion is
solved analytically (piecewise parabolas vertically, a folded straight line
horizontally), so every contact time is exact; each contact plays a modal
impact sound of the object's material, scaled by the impact speed, starting at
the contact sample. The video frame nearest each contact shows the object
touching the floor (squashed) or the wall: the animator's "contact frame".

Initial conditions come from the render rng and are redrawn until the contacts
are measurable: the first one after ~0.2 s, any two at least 3 video frames
apart, none in the last 0.1 s, every bounce apex inside the frame.

Pixel units throughout: y grows downwards, the floor's top edge is row
`floor_top(preset)`, the walls are the left and right image edges.
"""

from __future__ import annotations

import math

import numpy as np

from seedance.config import ClipPreset
from seedance.data.syncworld.common import (
    BACKGROUNDS,
    COLORS,
    NUMBER_WORDS,
    Rendered,
    draw_for_split,
    held_out,
    pick,
)
from seedance.data.syncworld.synth import attack_ramp, fade_out, finish, mix_at, modal, noise_burst

SHAPES = ("circle", "square", "triangle")
SIZES = {"small": 0.055, "medium": 0.08, "large": 0.105}  # object "radius" as a fraction of the image height
BOUNCINESS = {"low": (0.30, 0.45), "medium": (0.50, 0.65), "high": (0.70, 0.82)}  # coefficient of restitution


# Modal impact models: base frequency (Hz, for a medium object), mode frequency ratios, decay time
# constants (s) and amplitudes, plus a broadband contact click (decay s, low-pass taps, gain) that
# gives every hit a sharp onset even over a still-ringing earlier one. Ratios for metal and glass
# follow free bars/plates (inharmonic); rubber is a dull low thud.
MATERIALS: dict[str, dict] = {
    "wood": dict(
        f0=520,
        ratios=(1, 2.57, 4.2, 6.1),
        decays=(0.06, 0.04, 0.025, 0.015),
        amps=(1, 0.6, 0.35, 0.2),
        click=(0.004, 2, 0.5),
    ),
    "metal": dict(
        f0=820,
        ratios=(1, 2.76, 5.40, 8.93),
        decays=(0.45, 0.32, 0.22, 0.15),
        amps=(1, 0.7, 0.5, 0.3),
        click=(0.002, 1, 0.35),
    ),
    "glass": dict(
        f0=1700,
        ratios=(1, 2.32, 4.25, 6.63),
        decays=(0.3, 0.22, 0.15, 0.1),
        amps=(1, 0.6, 0.4, 0.25),
        click=(0.002, 1, 0.4),
    ),
    "rubber": dict(
        f0=180, ratios=(1, 1.9, 3.1), decays=(0.035, 0.025, 0.015), amps=(1, 0.4, 0.2), click=(0.008, 8, 0.6)
    ),
    "plastic": dict(
        f0=900,
        ratios=(1, 2.2, 3.8, 5.9),
        decays=(0.05, 0.035, 0.02, 0.012),
        amps=(1, 0.5, 0.3, 0.15),
        click=(0.003, 1, 0.5),
    ),
    "stone": dict(
        f0=380,
        ratios=(1, 2.3, 3.9, 5.8),
        decays=(0.04, 0.03, 0.02, 0.012),
        amps=(1, 0.7, 0.5, 0.3),
        click=(0.006, 3, 0.8),
    ),
}
SIZE_PITCH = {"small": 1.35, "medium": 1.0, "large": 0.72}  # smaller objects ring higher
SHAPE_PITCH = {"circle": 1.0, "square": 0.93, "triangle": 1.1}

FLOOR_FRAC = 0.86  # floor top as a fraction of the image height
GRAVITY = 9.0  # in floor heights per s^2: a drop from the top of the frame lands after ~0.47 s
FIRST_EVENT_S = 0.22  # no contact before this (onset detectors need a little lead-in)
END_MARGIN_S = 0.1  # no contact in the last 0.1 s (its sound would be cut off)
MIN_GAP_FRAMES = 3.0  # any two contacts at least this many video frames apart
WALL_MIN_SPEED_FRAMES = 2.2  # wall-hitting objects move >= 2.2 px per frame: clear of the wall one frame off
WALL_CLEARANCE_PX = 1.5  # objects that never hit a wall stay this far from it
MAX_TRIES_PER_OBJECT = 300
MAX_RESTARTS = 40


# ----------------------------------------------------------------------------- labels


def _draw(rng: np.random.Generator) -> dict:
    count = int(rng.choice([1, 2, 3], p=[0.4, 0.35, 0.25]))
    shape = pick(rng, SHAPES)
    material = pick(rng, MATERIALS)
    background = pick(rng, BACKGROUNDS)
    if count > 1 and rng.random() < 0.5:  # each object its own colour
        colors = [str(c) for c in rng.choice(list(COLORS), size=count, replace=False)]
    else:
        colors = [pick(rng, COLORS)] * count
    return {
        "shape": shape,
        "color": colors[0],
        "colors": colors,
        "count": count,
        "size": pick(rng, SIZES),
        "material": material,
        "bounciness": pick(rng, BOUNCINESS),
        "background": background,
    }


def combos(labels: dict) -> set[tuple[str, str, str]]:
    """The (shape, material, colour) combinations a clip shows."""
    return {(labels["shape"], labels["material"], c) for c in labels["colors"]}


def is_test_combo(shape: str, material: str, color: str) -> bool:
    return held_out("bounce", shape, material, color)


def is_test(labels: dict) -> bool:
    """Test clips show at least one held-out (shape, material, colour); train clips show none."""
    return any(is_test_combo(*c) for c in combos(labels))


def sample_labels(rng: np.random.Generator, split: str) -> dict:
    return draw_for_split(rng, split, _draw, is_test)


# ----------------------------------------------------------------------------- geometry and physics


def floor_top(preset: ClipPreset) -> int:
    """Row index of the floor's top edge; the row above it is where a touching object shows."""
    return int(round(FLOOR_FRAC * preset.height))


def _extent(shape: str, radius: float) -> tuple[float, float]:
    """(half width, height) of a shape of the given nominal radius, in pixels."""
    if shape == "circle":
        return radius, 2.0 * radius
    if shape == "square":
        return 0.9 * radius, 1.8 * radius
    side = 2.3 * radius  # equilateral triangle standing on its base
    return side / 2.0, side * math.sqrt(3.0) / 2.0


def _floor_contacts(h0: float, vy0: float, e: float, g: float, t_rest: float, t_end: float):
    """Floor contacts of a body dropped from height h0 (bottom above the floor) with upward speed vy0.

    Returns (times, impact speeds, rebound speeds, rest time or inf). After a contact whose
    rebound flight would be shorter than t_rest the body stays on the floor (rebound speed 0).
    """
    times, speeds, rebounds = [], [], []
    v = math.sqrt(vy0 * vy0 + 2.0 * g * h0)
    t = (vy0 + v) / g
    rest = math.inf
    while t < t_end:
        vr = e * v
        times.append(t)
        speeds.append(v)
        if 2.0 * vr / g < t_rest:
            rebounds.append(0.0)
            rest = t
            break
        rebounds.append(vr)
        t += 2.0 * vr / g
        v = vr
    return times, speeds, rebounds, rest


def _wall_contacts(x0: float, vx: float, lo: float, hi: float, t_stop: float) -> list[float]:
    """Times the centre x, moving at vx and reflecting between lo and hi, reaches lo or hi before t_stop."""
    if vx == 0.0:
        return []
    span = hi - lo
    s0 = (x0 - lo) / span  # in (0, 1): position in wall-to-wall units
    out = []
    k = 1 if vx > 0 else 0
    while True:
        t = (k - s0) * span / vx
        if t >= t_stop:
            return out
        out.append(t)
        k += 1 if vx > 0 else -1


def _fold(u: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Unfolded straight-line positions -> positions reflected between lo and hi."""
    span = hi - lo
    p = np.mod(u - lo, 2.0 * span)
    return lo + np.where(p <= span, p, 2.0 * span - p)


class _Body:
    """One object's trajectory, drawn from the rng; its contacts are exact.

    The object is released at `release` s from height h0 (bottom above the floor) with upward
    speed vy0; a late release starts above the frame (h0 >= the frame top), as if dropped in
    from outside, which spreads the contacts of several objects over the clip.
    """

    def __init__(
        self, rng, preset: ClipPreset, half_w: float, height: float, e_range, g: float, late: bool, t_rest: float
    ):
        floor = floor_top(preset)
        W = preset.width
        self.lo, self.hi = half_w, W - half_w
        self.half_w, self.height, self.g = half_w, height, g
        self.e = float(rng.uniform(*e_range))
        self.release = 0.0  # late objects get theirs from place_release()
        if late:
            self.h0, self.vy0 = float(floor * rng.uniform(1.0, 1.3)), 0.0
        else:
            self.h0 = float(floor * rng.uniform(0.25, 1.45))
            self.vy0 = 0.0 if rng.random() < 0.5 else float(rng.uniform(-0.4, 0.8) * math.sqrt(g * floor))
        span = self.hi - self.lo
        self.x0 = float(self.lo + span * rng.uniform(0.08, 0.92))
        if rng.random() < 0.55:
            self.vx = float(rng.uniform(-0.12, 0.12) * W)
        else:
            self.vx = float(rng.choice([-1.0, 1.0]) * rng.uniform(0.6, 1.0) * W)
        t_end = preset.duration_s + 1.0
        # Contact times local to the release (the release time shifts them all alike).
        self.local_floor_t, self.floor_v, self.rebound, self.local_rest = _floor_contacts(
            self.h0, self.vy0, self.e, g, t_rest, t_end
        )
        self.local_wall_t = _wall_contacts(self.x0, self.vx, self.lo, self.hi, min(self.local_rest, t_end))

    @property
    def floor_t(self) -> list[float]:
        return [self.release + t for t in self.local_floor_t]

    @property
    def wall_t(self) -> list[float]:
        return [self.release + t for t in self.local_wall_t]

    @property
    def rest(self) -> float:
        return self.release + self.local_rest

    def place_release(self, rng: np.random.Generator, taken: list[float], preset: ClipPreset) -> bool:
        """Pick a release time (from a grid over the first 80% of the clip) that keeps every contact
        measurable next to the `taken` ones; False if there is none."""
        local = np.asarray(self.local_floor_t + self.local_wall_t)
        grid = np.linspace(0.0, 0.8 * preset.duration_s, 128)
        times = grid[:, None] + local[None, :]  # [R, J]
        dur, gap = preset.duration_s, MIN_GAP_FRAMES / preset.fps
        ok = times.min(axis=1) >= FIRST_EVENT_S
        ok &= np.sort(times, axis=1)[:, 0] < dur - END_MARGIN_S
        ok &= ~np.any((times >= dur - END_MARGIN_S) & (times < dur + gap), axis=1)
        if taken:
            near = np.abs(times[:, :, None] - np.asarray(taken)[None, None, :]) < gap  # [R, J, T]
            ok &= ~np.any(near & (times[:, :, None] < dur + gap), axis=(1, 2))
        if not np.any(ok):
            return False
        self.release = float(rng.choice(grid[ok]))
        return True

    def valid(self, preset: ClipPreset) -> bool:
        """Checks that do not depend on the release time."""
        floor = floor_top(preset)
        top_room = floor - self.height - 1.0  # highest bottom position with the whole object in view
        if not self.local_floor_t:
            return False
        own = np.sort(np.asarray(self.local_floor_t + self.local_wall_t))
        if np.any(np.diff(own) < MIN_GAP_FRAMES / preset.fps):  # e.g. a wall hit just before a floor hit
            return False
        # Every bounce stays in view (the drop itself may start above the frame).
        if any(vr * vr / (2.0 * self.g) > top_room for vr in self.rebound):
            return False
        if self.wall_t:
            if abs(self.vx) < WALL_MIN_SPEED_FRAMES * preset.fps:
                return False
            if np.any(self.height_at(np.asarray(self.wall_t)) > top_room):
                return False  # a wall hit must be seen
        else:  # never touches a wall: keep clear of it
            x_end = self.x0 + self.vx * min(self.local_rest, preset.duration_s)
            if min(self.x0, x_end) < self.lo + WALL_CLEARANCE_PX or max(self.x0, x_end) > self.hi - WALL_CLEARANCE_PX:
                return False
        return True

    def events(self) -> list[tuple[float, str, float]]:
        """(time, kind, speed) for every contact, unsorted."""
        out = [(t, "floor", v) for t, v in zip(self.floor_t, self.floor_v)]
        out += [(t, "wall", abs(self.vx)) for t in self.wall_t]
        return out

    def height_at(self, t: np.ndarray) -> np.ndarray:
        """Height of the object's bottom above the floor at clip times t (vectorised)."""
        contacts = np.asarray(self.floor_t)
        idx = np.searchsorted(contacts, t, side="right")  # contacts already passed
        h = np.empty(t.shape, dtype=np.float64)
        before = idx == 0
        tb = np.maximum(t[before] - self.release, 0.0)
        h[before] = self.h0 + self.vy0 * tb - 0.5 * self.g * tb * tb
        after = ~before
        start = contacts[idx[after] - 1]
        v = np.asarray(self.rebound)[idx[after] - 1]
        dt = t[after] - start
        h[after] = np.where(v > 0, v * dt - 0.5 * self.g * dt * dt, 0.0)
        return np.maximum(h, 0.0)

    def x_at(self, t: np.ndarray) -> np.ndarray:
        moving = np.clip(t, self.release, self.rest) - self.release
        return _fold(self.x0 + self.vx * moving, self.lo, self.hi)


def _measurable(times: list[float], preset: ClipPreset) -> bool:
    """All contacts inside the clip are >= MIN_GAP_FRAMES apart and none falls in the last END_MARGIN_S."""
    dur = preset.duration_s
    gap = MIN_GAP_FRAMES / preset.fps
    inside = sorted(t for t in times if t < dur + gap)
    if any(dur - END_MARGIN_S <= t < dur + gap for t in inside):
        return False
    return all(b - a >= gap for a, b in zip(inside, inside[1:]))


def _lands_clear(body: _Body, others: list[_Body], half_w: float) -> bool:
    """No floor contact lands on (or right next to) an object already resting there: the hit
    would hide behind it, and two shapes inside each other read badly anyway."""
    clearance = 2.0 * half_w + 2.0

    def rest_x(b: _Body) -> float:
        return float(b.x_at(np.array([b.rest]))[0])

    for a, b in ((body, o) for o in others):
        for lander, rester in ((a, b), (b, a)):
            if not math.isfinite(rester.rest):
                continue
            for t in lander.floor_t:
                if t > rester.rest and abs(float(lander.x_at(np.array([t]))[0]) - rest_x(rester)) < clearance:
                    return False
    return True


def _simulate(labels: dict, preset: ClipPreset, rng: np.random.Generator) -> list[_Body]:
    radius = SIZES[labels["size"]] * preset.height
    half_w, height = _extent(labels["shape"], radius)
    g = GRAVITY * floor_top(preset)
    e_range = BOUNCINESS[labels["bounciness"]]
    # An object settles once its next hop would last less than t_rest. Several objects settle
    # sooner, so that all their contacts fit into the clip 3 frames apart.
    t_rest = max(0.25, 3.3 / preset.fps) * (1.0 + 0.25 * (labels["count"] - 1))
    for _ in range(MAX_RESTARTS):
        bodies: list[_Body] = []
        times: list[float] = []
        for i in range(labels["count"]):
            late = i > 0 and rng.random() < 0.7
            for attempt in range(MAX_TRIES_PER_OBJECT):
                # Objects released at t=0 are redrawn until they fit; after a few misses, or when
                # drawn "late", an object is dropped in from above at a release time that fits.
                dropped_in = late or attempt >= 30
                body = _Body(rng, preset, half_w, height, e_range, g, dropped_in, t_rest)
                if not body.valid(preset):
                    continue
                if dropped_in:
                    if not body.place_release(rng, times, preset):
                        continue
                elif min(body.floor_t + body.wall_t) < FIRST_EVENT_S or not _measurable(
                    times + [e[0] for e in body.events()], preset
                ):
                    continue
                if not _lands_clear(body, bodies, half_w):
                    continue
                bodies.append(body)
                times = times + [ev[0] for ev in body.events()]
                break
            else:
                break
        if len(bodies) == labels["count"]:
            return bodies
    raise RuntimeError(f"could not place {labels['count']} bouncing objects with measurable contacts")


# ----------------------------------------------------------------------------- rendering


def _shape_sdf(shape: str, dx: np.ndarray, dy: np.ndarray, radius: float) -> np.ndarray:
    """Signed distance (pixels, < 0 inside) in coordinates relative to the object's bottom centre (y down)."""
    if shape == "circle":
        return np.sqrt(dx * dx + (dy + radius) ** 2) - radius
    if shape == "square":
        s = 0.9 * radius
        qx = np.abs(dx) - s
        qy = np.abs(dy + s) - s
        outside = np.sqrt(np.maximum(qx, 0.0) ** 2 + np.maximum(qy, 0.0) ** 2)
        return outside + np.minimum(np.maximum(qx, qy), 0.0)
    side = 2.3 * radius
    h = side * math.sqrt(3.0) / 2.0
    # Max of the three edges' half-plane distances: exact inside, slightly sharp at the corners outside.
    edge = (h * (np.abs(dx) - side / 2.0) - (side / 2.0) * dy) / side
    return np.maximum(dy, edge)


def _shade(color: tuple[int, int, int], dy_norm: np.ndarray) -> np.ndarray:
    """A little top light: the object's own colour at its bottom, up to 25% whiter at its top.
    dy_norm in [-1, 0] (top to bottom). The bottom keeps full contrast where it meets floor and walls."""
    c = np.asarray(color, dtype=np.float32)
    return c + (255.0 - c) * (0.25 * -dy_norm[..., None])


def render(labels: dict, preset: ClipPreset, rng: np.random.Generator) -> Rendered:
    F, H, W, fps, sr = preset.num_frames, preset.height, preset.width, preset.fps, preset.sample_rate
    floor = floor_top(preset)
    bodies = _simulate(labels, preset, rng)
    radius = SIZES[labels["size"]] * H

    # 1. contacts: (time, body index, kind, speed) inside the clip, in time order
    contacts = sorted(
        (t, i, kind, v) for i, b in enumerate(bodies) for (t, kind, v) in b.events() if t < preset.duration_s
    )
    v_ref = math.sqrt(2.0 * GRAVITY * floor * floor)  # impact speed of a drop from the top of the frame
    strength = [float(np.clip((v / v_ref) ** 0.8, 0.3, 1.0)) for (_, _, _, v) in contacts]

    # 2. per-frame positions, with each contact's nearest frame showing the contact itself
    t_frames = np.arange(F) / fps
    xs = np.stack([b.x_at(t_frames) for b in bodies])  # [N, F]
    hs = np.stack([b.height_at(t_frames) for b in bodies])  # [N, F]
    squash = np.zeros_like(hs)
    visual = np.zeros(F, dtype=np.float32)
    for (t, i, kind, _), s in zip(contacts, strength):
        k = min(int(round(t * fps)), F - 1)
        # The contact frame shows the state at the contact instant (the wall hit: x exactly at the
        # wall; the floor hit: bottom on the floor, squashed by the impact).
        xs[i, k] = bodies[i].x_at(np.array([t]))[0]
        hs[i, k] = bodies[i].height_at(np.array([t]))[0]
        if kind == "floor":
            hs[i, k] = 0.0
            squash[i, k] = 0.22 * s
        visual[k] += s

    # 3. frames: background and floor once, then each object by anti-aliased signed distance, drawn
    #    only inside a small window that follows it (the window is clamped into the image: it is
    #    larger than the object, so it still covers whatever part of the object is in view)
    bg = np.asarray(BACKGROUNDS[labels["background"]], dtype=np.float32)
    floor_color = bg + 0.35 * (200.0 - bg)
    still = np.empty((H, W, 3), dtype=np.float32)
    still[:floor] = bg
    still[floor:] = floor_color
    still[floor : floor + 1] = np.minimum(floor_color * 1.15, 255.0)  # a lit floor edge
    frames = np.repeat(np.clip(still + 0.5, 0, 255).astype(np.uint8)[None], F, axis=0)  # [F,H,W,3]
    half_w, height = _extent(labels["shape"], radius)
    win_h = min(H, int(math.ceil(height)) + 4)
    win_w = min(W, int(math.ceil(2.0 * half_w * 1.15)) + 4)
    f_idx = np.arange(F)[:, None, None]
    for i in range(len(bodies)):
        oy = np.clip(np.floor(floor - hs[i] - height) - 2, 0, H - win_h).astype(np.int64)  # [F] window top
        ox = np.clip(np.floor(xs[i] - 1.15 * half_w) - 2, 0, W - win_w).astype(np.int64)  # [F] window left
        rows = oy[:, None] + np.arange(win_h)[None, :]  # [F,h]
        cols = ox[:, None] + np.arange(win_w)[None, :]  # [F,w]
        sx = (1.0 + 0.6 * squash[i])[:, None, None]
        sy = (1.0 - squash[i])[:, None, None]
        dx = (cols[:, None, :] + 0.5 - xs[i][:, None, None]) / sx  # [F,1,w], pixel centres
        dy = (rows[:, :, None] + 0.5 - (floor - hs[i])[:, None, None]) / sy  # [F,h,1]
        sd = _shape_sdf(labels["shape"], dx, dy, radius)  # [F,h,w]
        cover = np.clip(0.5 - sd * np.minimum(sx, sy), 0.0, 1.0)[..., None]
        color = _shade(COLORS[labels["colors"][i]], np.clip(dy / height, -1.0, 0.0))
        index = (f_idx, rows[:, :, None], cols[:, None, :])
        window = frames[index].astype(np.float32)  # [F,h,w,3]
        frames[index] = np.clip(window + cover * (color - window) + 0.5, 0, 255).astype(np.uint8)

    # 4. audio: one modal impact per contact, at its exact sample, louder for faster hits
    audio = np.zeros(preset.num_samples, dtype=np.float32)
    mat = MATERIALS[labels["material"]]
    sounds = []
    for _ in bodies:  # one sound per object (slight detuning between objects), reused for all its hits
        f0 = mat["f0"] * SIZE_PITCH[labels["size"]] * SHAPE_PITCH[labels["shape"]] * rng.uniform(0.94, 1.06)
        n = int(min(1.0, 7.0 * max(mat["decays"])) * sr)
        phases = rng.uniform(0, 2 * np.pi, len(mat["ratios"]))
        ring = modal(f0 * np.asarray(mat["ratios"]), mat["decays"], mat["amps"], n, sr, phases)
        c_decay, c_smooth, c_gain = mat["click"]
        click = noise_burst(rng, n, sr, c_decay, c_smooth)
        sound = ring / (np.max(np.abs(ring)) + 1e-9) + c_gain * click / (np.max(np.abs(click)) + 1e-9)
        sounds.append(sound * attack_ramp(n, sr) * fade_out(n, sr))
    for (t, i, kind, _), s in zip(contacts, strength):
        mix_at(audio, sounds[i], int(round(t * sr)), gain=s * (0.8 if kind == "wall" else 1.0))
    audio = finish(audio)

    return Rendered(frames=frames, audio=audio, events=[c[0] for c in contacts], visual=visual)


# ----------------------------------------------------------------------------- captions

_SHAPE_NOUNS = {
    "circle": (("ball", "balls"), ("circle", "circles"), ("disc", "discs")),
    "square": (("square", "squares"), ("block", "blocks"), ("cube", "cubes")),
    "triangle": (("triangle", "triangles"), ("wedge", "wedges"), ("pyramid", "pyramids")),
}
_SIZE_WORDS = {
    "small": ("small", "little", "tiny"),
    "medium": ("medium", "mid-sized", "medium-sized"),
    "large": ("large", "big", "huge"),
}
_MATERIAL_WORDS = {
    "wood": ("wooden", "wood"),
    "metal": ("metal", "steel"),
    "glass": ("glass",),
    "rubber": ("rubber",),
    "plastic": ("plastic",),
    "stone": ("stone", "rock"),
}
_BOUNCE_PHRASES = {
    "low": ("barely bounce{s}", "land{s} with a dull thud", "hardly bounce{s}", "bounce{s} low"),
    "medium": ("bounce{s} a few times", "bounce{s}", "hop{s} along"),
    "high": ("bounce{s} high", "bounce{s} and bounce{s} again", "spring{s} back up"),
}
_BOUNCE_ADJ = {
    "low": ("heavy", "dull", "barely bouncy"),
    "medium": ("fairly bouncy", "somewhat bouncy"),
    "high": ("bouncy", "springy", "very bouncy"),
}
_FALL_VERBS = ("drop{s} onto", "fall{s} onto", "bounce{s} on", "hit{s}")
_GROUND = ("floor", "ground")


def _verb(template: str, plural: bool) -> str:
    return template.replace("{s}", "" if plural else "s")


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _color_phrase(colors: list[str]) -> str:
    if len(set(colors)) == 1:
        return colors[0]
    return ", ".join(colors[:-1]) + f" and {colors[-1]}"


def caption(labels: dict, rng: np.random.Generator) -> str:
    n = labels["count"]
    plural = n > 1
    noun = pick(rng, _SHAPE_NOUNS[labels["shape"]])[1 if plural else 0]
    size = pick(rng, _SIZE_WORDS[labels["size"]])
    material = pick(rng, _MATERIAL_WORDS[labels["material"]])
    bg = labels["background"]
    colors = _color_phrase(labels["colors"])
    count = NUMBER_WORDS[n] if plural else _article(size)
    if plural and len(set(labels["colors"])) > 1 and rng.random() < 0.5:
        # "a red, a teal and a white ball" style for mixed colours
        items = [f"{_article(c)} {c}" for c in labels["colors"]]
        singular = pick(rng, _SHAPE_NOUNS[labels["shape"]])[0]
        subject = ", ".join(items[:-1]) + f" and {items[-1]} {material} {singular}, all {size},"
    else:
        subject = f"{count} {size} {colors} {material} {noun}"
    bounce = _verb(pick(rng, _BOUNCE_PHRASES[labels["bounciness"]]), plural)
    ground = pick(rng, _GROUND)
    style = int(rng.integers(5))
    if style == 0:
        return f"{subject} {_verb(pick(rng, _FALL_VERBS), plural)} a {bg} {ground} and {bounce}"
    if style == 1:
        return f"{subject} {bounce} on a {bg} {ground}"
    if style == 2:
        adj = pick(rng, _BOUNCE_ADJ[labels["bounciness"]])
        return f"{bg} background, {NUMBER_WORDS[n]} {adj} {colors} {material} {noun}, {size}, falling and bouncing"
    if style == 3:
        return f"on a {bg} {ground}, {subject} {bounce}; each hit sounds like {labels['material']}"
    what = (
        pick(rng, ("falling objects", "dropped objects"))
        if plural
        else pick(rng, ("a falling object", "a dropped object"))
    )
    adj = pick(rng, _BOUNCE_ADJ[labels["bounciness"]])
    return f"{what}: {NUMBER_WORDS[n]} {size} {adj} {material} {noun} in {colors} against {bg}"
