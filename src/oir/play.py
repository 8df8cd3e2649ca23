"""``oir play``: watch a trained agent follow a free-typed instruction, as an animated GIF.

One env of the run's world (:class:`~oir.env.VecEnv` of one) is stepped by the run's policy in a
jitted step; every frame is drawn by Craftax's own pixel renderer, with the instruction, the
step number and a live log of the narrator's event texts written around it.

The policy gets only the embedding of the typed text (design doc §9). A ``--task`` spec is
checked beside it with the same jitted progress as ``oir eval``, for the frames and the printed
outcome only; the policy never sees it.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from oir.errors import CliError, check_writable, first_line

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image
    from rich.console import Console

    from oir.evaluate import TextPolicy
    from oir.tasks import TaskSpec

BLOCK_PIXELS = 16  # Craftax's BLOCK_PIXEL_SIZE_IMG; its texture cache holds only 7, 16 and 64
LOG_LINES = 5
HOLD_LAST_MS = 2500  # the last frame stays up, so the ending can be read before the loop

_FAIL_WHY = {
    "none": "a 'none' clause held",
    "order": "a clause held out of order",
    "budget": "the 'within' budget ran out",
}
# Checked when no --task is given: it never holds (vitals stop at 9), so one compiled step
# serves both cases.
_NEVER = {"all": [{"counter": "health", "at_least": 10}]}


@dataclass
class PlayConfig:
    """Render a trained agent following a free-typed instruction into an animated GIF.

    The policy sees only the embedding of the instruction text. `--task` (a task spec, JSON, as in
    suite files) is checked beside it to report success, failure or timeout; the policy never sees it.
    """

    run: Path  # an `oir train` run dir or a shipped agent (agents/NAME)
    instruction: str  # any text; embedded with the run's encoder
    out: Path  # the GIF to write
    seed: int = 0  # world and action noise
    steps: int = 300  # at most this many env steps
    task: str | None = None  # a task spec as JSON: stop when it succeeds or fails, print the outcome
    fps: float = 10.0  # GIF frames per second
    scale: int = 3  # the 16-pixel Craftax blocks are scaled up this many times (3: 432 px wide)
    every: int = 1  # keep every K-th frame (and the last), for smaller GIFs


@dataclass
class Outcome:
    steps: int  # env steps taken
    reason: str  # "success" | "fail" | "limit" | "game_over"
    detail: str = ""  # the fail reason, or whether the agent died
    totals: dict[str, int] | None = None  # event kind -> count over the whole play
    first: dict[str, int] | None = None  # event kind -> step of its first occurrence


def _check(cfg: PlayConfig) -> TaskSpec | None:
    """Every cheap check before the slow loading; returns the parsed spec or None."""
    from oir.tasks import SpecError, parse_spec

    if not cfg.instruction.strip():
        raise CliError("--instruction is empty (type what the agent should do)")
    if cfg.steps < 1:
        raise CliError(f"--steps must be at least 1, got {cfg.steps}")
    if cfg.every < 1:
        raise CliError(f"--every must be at least 1, got {cfg.every}")
    if not 1 <= cfg.scale <= 8:
        raise CliError(f"--scale must be between 1 and 8, got {cfg.scale}")
    if not 0 < cfg.fps <= 50:  # GIF delays are in 10 ms units, and viewers slow faster ones down
        raise CliError(f"--fps must be above 0 and at most 50, got {cfg.fps:g}")
    from oir.policy import check_run_dir

    try:
        check_run_dir(cfg.run)
    except FileNotFoundError as e:
        raise CliError(str(e)) from None
    spec = None
    if cfg.task is not None:
        try:
            spec = parse_spec(cfg.task, _run_world(cfg.run))  # the run's world's counters
        except SpecError as e:
            raise CliError(f"--task: {e.message if e.field == 'task' else e}") from None
    check_writable(cfg.out)
    return spec


def _run_world(run: Path) -> str:
    """The world a run was trained in (its config's env; runs made before worlds: Classic)."""
    import json

    try:
        return str(json.loads((run / "config.json").read_text()).get("env", "classic"))
    except (OSError, ValueError, AttributeError):
        return "classic"  # load_run says what is wrong with the config, in one line


def _renderer(world) -> Callable:
    """The world's pixel renderer at 16 px a block (Craftax prints while loading its textures)."""
    with contextlib.redirect_stdout(io.StringIO()):
        return world.make_renderer(BLOCK_PIXELS)


def _make_step(env, act: Callable, render: Callable) -> Callable:
    """One jitted env step: action, step, task progress, and the frame of the new state."""
    import jax

    from oir import tasks

    def step(params, emb, bank, prog, key, vec, obs):
        k_act, k_env = jax.random.split(key)
        action = act(params, k_act, obs, emb)
        obs, vec, world = env.step(k_env, vec, action)
        events, levels = world.events[0], world.levels[0]
        prog, success, fail, reason = tasks.progress_step(bank, prog, events, levels)
        frame = render(jax.tree.map(lambda x: x[0], vec.env))
        return vec, obs, prog, events, levels, world.done[0], success, fail, reason, frame

    return jax.jit(step)


class _Canvas:
    """Draws a frame: the instruction and status above the game, the event log below it."""

    def __init__(self, instruction: str, scale: int, steps: int, blocks_wide: int = 9):
        from PIL import ImageFont

        self.scale, self.steps = scale, steps
        self.font = ImageFont.load_default(size=max(9, 4 * scale + 2))
        self.big = ImageFont.load_default(size=max(12, 9 * scale))
        self.line_h = int(self.font.size * 1.35)
        self.pad = max(3, 2 * scale)
        self.width = blocks_wide * BLOCK_PIXELS * scale
        self.instruction = self._wrap(f"Instruction: {instruction.strip()}", 3)
        self.top = self.pad * 2 + self.line_h * (len(self.instruction) + 1)
        self.bottom = self.pad * 2 + self.line_h * LOG_LINES

    def _fit(self, text: str) -> str:
        room = self.width - 2 * self.pad
        if self.font.getlength(text) <= room:
            return text
        while text and self.font.getlength(text + "…") > room:
            text = text[:-1]
        return text + "…"

    def _wrap(self, text: str, max_lines: int) -> list[str]:
        room = self.width - 2 * self.pad
        lines: list[str] = []
        for word in text.split():
            if lines and self.font.getlength(f"{lines[-1]} {word}") <= room:
                lines[-1] += f" {word}"
            else:
                lines.append(word)
        if len(lines) > max_lines:
            lines = [*lines[: max_lines - 1], " ".join(lines[max_lines - 1 :])]
        return [self._fit(x) for x in lines]

    def draw(self, pixels: np.ndarray, t: int, status: tuple[str, tuple[int, int, int]] | None,
             log: list[str], banner: str | None = None) -> Image.Image:
        from PIL import Image, ImageDraw

        game = Image.fromarray(pixels).resize(
            (pixels.shape[1] * self.scale, pixels.shape[0] * self.scale), Image.Resampling.NEAREST
        )
        img = Image.new("RGB", (self.width, self.top + game.height + self.bottom), (24, 24, 28))
        img.paste(game, (0, self.top))
        d = ImageDraw.Draw(img)
        y = self.pad
        for line in self.instruction:
            d.text((self.pad, y), line, font=self.font, fill=(250, 250, 250))
            y += self.line_h
        d.text((self.pad, y), f"step {t}/{self.steps}", font=self.font, fill=(170, 170, 180))
        if status is not None:
            text, colour = status
            d.text((self.width - self.pad, y), text, font=self.font, fill=colour, anchor="ra")
        y = self.top + game.height + self.pad
        for i, line in enumerate(log[-LOG_LINES:]):
            newest = i == min(len(log), LOG_LINES) - 1
            d.text((self.pad, y), self._fit(line), font=self.font, fill=(255, 230, 120) if newest else (200, 200, 200))
            y += self.line_h
        if not log:
            d.text((self.pad, y), "(no events yet)", font=self.font, fill=(120, 120, 130))
        if banner is not None:
            # Two blocks below the player (who stands at the centre of the 7-row map), so the
            # banner hides neither the agent nor what it just did.
            block = BLOCK_PIXELS * self.scale
            cx, cy = self.width // 2, self.top + (7 // 2 + 2) * block + block // 2
            box = d.textbbox((cx, cy), banner, font=self.big, anchor="mm")
            d.rectangle((box[0] - self.pad, box[1] - self.pad, box[2] + self.pad, box[3] + self.pad), fill=(0, 0, 0))
            d.text((cx, cy), banner, font=self.big, fill=(255, 255, 255), anchor="mm")
        return img


def _status(spec: TaskSpec | None, reason: str | None, t: int, why: str = "") -> tuple[str, tuple[int, int, int]] | None:
    """The task's state for the header: ``reason`` is the outcome on the last frame, else None."""
    if spec is None:
        return None
    if reason == "success":
        return f"task: success at step {t}", (120, 230, 120)
    if reason == "fail":
        return f"task: failed at step {t} ({why})", (240, 110, 110)
    if reason is not None:
        return "task: not done", (240, 180, 110)
    return "task: pending", (170, 170, 180)


def run_play(cfg: PlayConfig, spec: TaskSpec | None, policy: TextPolicy,
             world_name: str = "classic") -> tuple[list[Image.Image], list[int], Outcome]:
    """Step one env with ``policy`` (a :class:`~oir.evaluate.TextPolicy` on the instruction) and
    draw the frames; returns (frames, their durations in ms, outcome)."""
    import jax
    import numpy as np

    from oir import tasks, worlds
    from oir.env import VecEnv
    from oir.narrate import _step_entries  # the narrator's own phrases, levels included

    world = worlds.get(world_name)
    achievements, level_names, phrases = world.achievements, world.level_names, world.words.phrases
    env = VecEnv(1, reset_pool=1, world=world)  # the clip ends with its game: one world is all it needs
    render = _renderer(world)
    step = _make_step(env, policy.act, render)
    bank = tasks.TaskBank.from_specs([spec or tasks.parse_spec(_NEVER, world)]).take(0)
    prog = tasks.progress_init((), world.num_events)
    key, k_reset = jax.random.split(jax.random.PRNGKey(cfg.seed))
    obs, vec = env.reset(k_reset)
    pixels = np.asarray(jax.jit(render)(jax.tree.map(lambda x: x[0], vec.env))).astype(np.uint8)
    canvas = _Canvas(cfg.instruction, cfg.scale, cfg.steps, pixels.shape[1] // BLOCK_PIXELS)
    frames = [canvas.draw(pixels, 0, _status(spec, None, 0), [])]
    log: list[str] = []
    totals = np.zeros(len(achievements), np.int64)
    first: dict[str, int] = {}
    outcome = Outcome(cfg.steps, "limit")
    for t in range(1, cfg.steps + 1):
        key, sub = jax.random.split(key)
        vec, obs, prog, events, levels, done, success, fail, reason, frame = step(
            policy.params, policy.emb, bank, prog, sub, vec, obs)
        events, levels = np.asarray(events), np.asarray(levels)
        log += [f"t={t} {x}" for x in _step_entries(events, levels, world)]
        totals += events[: len(achievements)]
        for k in np.flatnonzero(events[: len(achievements)]):
            first.setdefault(achievements[k], t)
        banner = None
        if spec is not None and bool(success):
            outcome, banner = Outcome(t, "success"), "TASK SUCCESS"
        elif spec is not None and bool(fail):
            why = tasks.FAIL_REASONS[int(reason)]
            outcome, banner = Outcome(t, "fail", why), "TASK FAILED"
        elif bool(done):
            died = int(levels[level_names.index("health")]) <= 0
            outcome, banner = Outcome(t, "game_over", "the agent died" if died else "the episode ended"), "GAME OVER"
        elif t == cfg.steps:
            banner = "STEP LIMIT"
        if not bool(done):
            # A finished game already holds a fresh world: its last frame stays the one before.
            pixels = np.asarray(frame).astype(np.uint8)
        if banner is not None or t % cfg.every == 0:
            status = _status(spec, outcome.reason if banner else None, t,
                             _FAIL_WHY.get(outcome.detail, "") if outcome.reason == "fail" else "")
            frames.append(canvas.draw(pixels, t, status, log, banner))
        if banner is not None:
            break
    outcome.totals = {phrases[a]: int(n) for a, n in zip(achievements, totals, strict=True) if n}
    outcome.first = {phrases[a]: s for a, s in first.items()}
    durations = [round(1000 / cfg.fps)] * len(frames)
    durations[-1] = max(durations[-1], HOLD_LAST_MS)
    return frames, durations, outcome


def write_gif(path: Path, frames: list[Image.Image], durations: list[int]) -> None:
    # One palette for the whole GIF: Craftax's pixel art has few colours, and a shared palette
    # keeps colours steady from frame to frame and lets PIL store only what changed.
    from PIL import Image

    sample = frames[:: max(1, len(frames) // 8)][:8]
    w, h = sample[0].size
    montage = Image.new("RGB", (w, h * len(sample)))
    for i, f in enumerate(sample):
        montage.paste(f, (0, i * h))
    palette = montage.quantize(colors=255, method=Image.Quantize.MEDIANCUT)
    quantized = [f.quantize(palette=palette, dither=Image.Dither.NONE) for f in frames]
    quantized[0].save(path, format="GIF", save_all=True, append_images=quantized[1:],
                      duration=durations, loop=0, disposal=1)


def outcome_line(spec: TaskSpec | None, outcome: Outcome, steps: int) -> str:
    """The one line that says how the play ended."""
    if spec is None:
        if outcome.reason == "game_over":
            return f"game over at step {outcome.steps} ({outcome.detail})"
        return f"played {outcome.steps} steps (the --steps limit)"
    if outcome.reason == "success":
        return f"task succeeded at step {outcome.steps}"
    if outcome.reason == "fail":
        return f"task failed at step {outcome.steps} ({_FAIL_WHY[outcome.detail]})"
    if outcome.reason == "game_over":
        return f"task not done: game over at step {outcome.steps} ({outcome.detail})"
    return f"task timed out at step {outcome.steps} (not done within --steps {steps})"


def play(cfg: PlayConfig, console: Console) -> int:
    """``oir play``: load the run, play the instruction, write the GIF, print the outcome."""
    import time

    from oir import jaxcache
    from oir.policy import load_run

    spec = _check(cfg)
    jaxcache.enable()
    t0 = time.perf_counter()
    try:
        run_cfg, make_policy = load_run(cfg.run)
        policy = make_policy([cfg.instruction])
    except (FileNotFoundError, ValueError) as e:  # a bad config.json or checkpoint: already one line
        raise CliError(str(e)) from None
    except Exception as e:  # anything else the loading raises (the encoder, say): one line too
        raise CliError(f"cannot load the run in {cfg.run}: {first_line(e, typed=False, limit=400)}") from None
    console.print(f"[bold]oir play[/]: {cfg.run} ({run_cfg.algo}, {run_cfg.encoder} encoder), seed {cfg.seed}, "
                  f"up to {cfg.steps} steps: {cfg.instruction.strip()!r}", soft_wrap=True, highlight=False)
    frames, durations, outcome = run_play(cfg, spec, policy, run_cfg.env)
    try:
        write_gif(cfg.out, frames, durations)
    except OSError as e:
        raise CliError(f"cannot write {cfg.out}: {e.strerror or e}") from None
    events = ", ".join(f"{name} x{n} (first at t={outcome.first[name]})" for name, n in outcome.totals.items())
    console.print(f"events: {events or 'none'}", soft_wrap=True, highlight=False)
    w, h = frames[0].size
    console.print(f"wrote {cfg.out}: {len(frames)} frames, {w}x{h} px, {cfg.out.stat().st_size / 1024:.0f} KB "
                  f"in {time.perf_counter() - t0:.0f} s", soft_wrap=True, highlight=False)
    console.print(outcome_line(spec, outcome, cfg.steps), soft_wrap=True, highlight=False)
    return 0
