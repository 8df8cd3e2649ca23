"""Learners: loss functions and returns against plain loops, encoders, and `oir train` end to end."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from oir.cli import main
from oir.encode import CachedEncoder, HashEncoder, make_encoder
from oir.learn import timeout_values
from oir.ppo import PPOConfig, gae, ppo_loss
from oir.pqn import lambda_returns, td_loss

RNG = np.random.default_rng(0)
T, N = 7, 3
REWARD = RNG.integers(0, 2, (T, N)).astype(np.float32)
DONE = RNG.random((T, N)) < 0.3
VALUE = RNG.normal(size=(T, N)).astype(np.float32)
LAST = RNG.normal(size=N).astype(np.float32)


def test_gae_matches_a_plain_loop():
    gamma, lam = 0.9, 0.8
    want = np.zeros((T, N))
    adv_next, v_next = np.zeros(N), LAST
    for t in reversed(range(T)):
        keep = 1.0 - DONE[t]
        delta = REWARD[t] + gamma * v_next * keep - VALUE[t]
        adv_next = delta + gamma * lam * keep * adv_next
        v_next = VALUE[t]
        want[t] = adv_next
    np.testing.assert_allclose(gae(REWARD, VALUE, DONE, LAST, gamma, lam), want, rtol=1e-5)


def test_lambda_returns_match_a_plain_loop_and_limits():
    gamma = 0.95
    q_max = VALUE
    for lam in (0.0, 0.5, 1.0):
        want = np.zeros((T, N))
        g_next, q_next = LAST, LAST
        for t in reversed(range(T)):
            g = REWARD[t] + gamma * (1 - DONE[t]) * (lam * g_next + (1 - lam) * q_next)
            want[t], g_next, q_next = g, g, q_max[t]
        np.testing.assert_allclose(lambda_returns(REWARD, DONE, q_max, LAST, gamma, lam), want, rtol=1e-5)
    # lam = 0 is one-step Q-learning.
    one_step = REWARD[:-1] + gamma * (1 - DONE[:-1]) * q_max[1:]
    np.testing.assert_allclose(lambda_returns(REWARD, DONE, q_max, LAST, gamma, 0.0)[:-1], one_step, rtol=1e-5)


# One env, 6 steps: the instruction times out at step 1 (the world goes on), the next one ends in
# death at step 3, and the last runs on past the rollout. obs_t is a number; the value of
# (obs, instruction) is a plain function, so the bootstrap can be worked out by hand.
OBS = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 5.0], np.float32)[:, None, None]  # [T, N=1, 1]
LAST_OBS = np.array([[6.0]], np.float32)
TASK = np.array([0, 0, 1, 1, 2, 2], np.int32)[:, None]
R = np.array([0, 0, 0, 0, 1, 0], np.float32)[:, None]
TIMEOUT = np.array([0, 1, 0, 0, 0, 0], bool)[:, None]
DEATH = np.array([0, 0, 0, 1, 0, 0], bool)[:, None]
ENDED = TIMEOUT | DEATH


def toy_value(obs, task):
    return 0.1 * obs[..., 0] + 0.5 * task.astype(jnp.float32) + 0.3


def test_timeout_values_are_the_same_instructions_next_value_and_zero_elsewhere():
    boot = np.asarray(timeout_values(toy_value, OBS, LAST_OBS, TASK, TIMEOUT & ~DEATH))
    want = np.zeros((6, 1))
    want[1] = 0.1 * 2.0 + 0.5 * 0 + 0.3  # obs_2 under instruction 0, not under instruction 1
    np.testing.assert_allclose(boot, want, rtol=1e-6)


@pytest.mark.parametrize("lam", [0.0, 0.7, 1.0])
def test_a_timeout_bootstraps_and_a_death_does_not_pqn(lam):
    gamma = 0.9
    v = np.asarray(toy_value(OBS, TASK))  # q_max of each step under its own instruction
    last = np.asarray(toy_value(LAST_OBS, TASK[-1]))
    boot = timeout_values(toy_value, OBS, LAST_OBS, TASK, TIMEOUT & ~DEATH)
    got = np.asarray(lambda_returns(R, ENDED, v, last, gamma, lam, boot))
    # By hand, backwards: the last instruction bootstraps from the rollout's end; death (t=3) is
    # terminal; the timeout (t=1) bootstraps from obs_2 under instruction 0.
    want = np.zeros(6)
    g_next, q_next = last[0], last[0]
    for t in reversed(range(6)):
        if DEATH[t, 0]:
            g = R[t, 0]
        elif TIMEOUT[t, 0]:
            g = R[t, 0] + gamma * float(toy_value(OBS[t + 1], TASK[t])[0])
        else:
            g = R[t, 0] + gamma * (lam * g_next + (1 - lam) * q_next)
        want[t], g_next, q_next = g, g, v[t, 0]
    np.testing.assert_allclose(got[:, 0], want, rtol=1e-5)
    # Without the bootstrap the timeout's target is its reward alone (the old, biased target).
    assert float(lambda_returns(R, ENDED, v, last, gamma, lam)[1, 0]) == 0.0 < got[1, 0]


def test_a_timeout_bootstraps_and_a_death_does_not_ppo():
    gamma, lam = 0.9, 0.8
    v = np.asarray(toy_value(OBS, TASK))
    last = np.asarray(toy_value(LAST_OBS, TASK[-1]))
    boot = timeout_values(toy_value, OBS, LAST_OBS, TASK, TIMEOUT & ~DEATH)
    got = np.asarray(gae(R, v, ENDED, last, gamma, lam, boot))[:, 0]
    want = np.zeros(6)
    adv_next, v_next = 0.0, last[0]
    for t in reversed(range(6)):
        if DEATH[t, 0]:
            adv = R[t, 0] - v[t, 0]
        elif TIMEOUT[t, 0]:
            adv = R[t, 0] + gamma * float(toy_value(OBS[t + 1], TASK[t])[0]) - v[t, 0]
        else:
            adv = R[t, 0] + gamma * v_next - v[t, 0] + gamma * lam * adv_next
        want[t], adv_next, v_next = adv, adv, v[t, 0]
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_td_loss_and_its_gradient_stops_at_the_target():
    q = jnp.array([[1.0, 2.0], [0.0, -1.0]])
    action = jnp.array([1, 0])
    target = jnp.array([3.0, 0.5])
    loss, q_mean = td_loss(q, action, target)
    assert float(loss) == pytest.approx(0.5 * ((2 - 3) ** 2 + (0 - 0.5) ** 2) / 2)
    assert float(q_mean) == pytest.approx(1.0)
    g_target = jax.grad(lambda t: td_loss(q, action, t)[0])(target)
    assert float(jnp.abs(g_target).sum()) == 0.0


def test_ppo_loss_clips_and_prefers_advantaged_actions():
    cfg = PPOConfig(clip_eps=0.2, vf_coef=0.5, ent_coef=0.0)
    logits = jnp.zeros((2, 3))
    action = jnp.array([0, 1])
    old_logp = jnp.log(jnp.full(2, 1 / 3))
    adv = jnp.array([1.0, -1.0])
    value = old_value = target = jnp.zeros(2)
    _total, (pg, v, ent) = ppo_loss(cfg, logits, value, action, old_logp, old_value, adv, target)
    # At ratio 1 the surrogate is -mean(normalised adv) = 0, entropy is log(3).
    assert float(pg) == pytest.approx(0.0, abs=1e-6) and float(v) == 0.0
    assert float(ent) == pytest.approx(np.log(3), rel=1e-5)
    grad = jax.grad(lambda lg: ppo_loss(cfg, lg, value, action, old_logp, old_value, adv, target)[0])(logits)
    assert float(grad[0, 0]) < 0 < float(grad[1, 1])  # raise action 0 (adv > 0), lower action 1
    # Far outside the clip range the surrogate has no gradient.
    big = jnp.array([[5.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    grad = jax.grad(lambda lg: ppo_loss(cfg, lg, value, action, old_logp, old_value, adv, target)[1][0])(big)
    assert float(jnp.abs(grad[0]).sum()) == 0.0


def test_hash_encoder_is_deterministic_and_normalised():
    a = HashEncoder().encode(["Collect three wood", "collect three wood!", "drink water"])
    b = HashEncoder().encode(["Collect three wood"])
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[0], a[1])  # case and punctuation do not matter
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, rtol=1e-6)
    assert a.shape == (3, 384) and a[0] @ a[2] < 0.5


def test_minilm_encoder_is_deterministic_and_meaningful(tmp_path):
    enc = make_encoder("minilm", cache=tmp_path / "emb.sqlite")
    texts = ["Collect some wood.", "chop down a tree and grab a log", "Drink water from the lake."]
    a = enc.encode(texts)
    assert a.shape == (3, 384) and enc.name == "all-MiniLM-L6-v2"
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, rtol=1e-5)
    assert a[0] @ a[1] > a[0] @ a[2]  # wood paraphrases are closer than wood vs water
    fresh = enc.encoder.encode(texts)  # the model itself, past the cache
    np.testing.assert_allclose(fresh, a, atol=1e-6)
    # A second cache on the same file answers from disk without the model.
    again = CachedEncoder(HashEncoder(), tmp_path / "emb.sqlite")
    again.name = enc.name
    np.testing.assert_array_equal(again.encode(texts), a)
    assert again.hits == 3 and again.misses == 0


TINY_SUITE = [
    {"id": "wood", "text": "collect wood", "task": {"all": [{"counter": "collect_wood", "at_least": 1}]}, "split": "train", "category": "single"},
    {"id": "drink", "text": "drink water", "task": {"all": [{"counter": "collect_drink", "at_least": 1}]}, "split": "train", "category": "single"},
    {"id": "sapling", "text": "get a sapling", "task": {"all": [{"counter": "collect_sapling", "at_least": 1}]}, "split": "test", "category": "single"},
]


@pytest.fixture(scope="module")
def tiny_suite(tmp_path_factory):
    path = tmp_path_factory.mktemp("suite") / "tiny.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in TINY_SUITE) + "\n")
    return path


@pytest.mark.parametrize("algo", ["pqn", "ppo"])
def test_oir_train_end_to_end_writes_the_run(tmp_path, tiny_suite, algo, capsys):
    out = tmp_path / algo
    args = ["train", "--algo", algo, "--relabel", "none", "--achievement-bonus", "0", "--steps", "2048",
            "--num-envs", "8", "--encoder", "hash",
            "--suite", str(tiny_suite), "--out", str(out), "--eval-episodes", "1", "--eval-max-steps", "10",
            "--ppo.num-steps", "32", "--pqn.num-steps", "16"]
    assert main(args) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["algo"] == algo and config["num_envs"] == 8
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    per_update = 8 * (32 if algo == "ppo" else 16)
    assert [r["env_steps"] for r in rows] == [per_update * (i + 1) for i in range(len(rows))]
    assert rows[-1]["env_steps"] >= 2048
    loss = "td_loss" if algo == "pqn" else "value_loss"
    for key in ("sps", "mean_return", "success_rate", "task_length", loss):
        assert all(np.isfinite(r[key]) for r in rows), key
    assert list((out / "tb").iterdir())
    assert (out / "checkpoint").is_dir()
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["eval"]["success_by_split"]) == {"train", "test", "all"}
    assert "Final evaluation" in capsys.readouterr().out

    # `oir eval` restores the checkpoint and runs an unseen suite file with new texts.
    unseen = tmp_path / "unseen.jsonl"
    unseen.write_text(json.dumps({"id": "n1", "text": "please go and fetch a log or two", "split": "test",
                                  "category": "brand-new", "task": {"all": [{"counter": "collect_wood", "at_least": 1}]}}) + "\n")
    res = tmp_path / "results.json"
    assert main(["eval", "--run", str(out), "--suite", str(unseen), "--episodes", "3", "--max-steps", "10",
                 "--out", str(res)]) == 0
    rep = json.loads(res.read_text())
    assert rep["lines"][0]["episodes"] == 3 and set(rep["success_by_category"]) == {"brand-new", "all"}
    assert rep["tasks"][0]["task_id"] == "n1" and 0.0 <= rep["coverage"] <= 1.0
    unseen.write_text(unseen.read_text() + '{"id": "n2", "text": "x", "task": {"all": []}}\n')
    capsys.readouterr()
    assert main(["eval", "--run", str(out), "--suite", str(unseen)]) == 2
    assert capsys.readouterr().err.strip() == f"oir: error: {unseen}:2: task.all: is empty (a spec needs at least one clause)"


@pytest.mark.parametrize("args,message", [
    (["--algo", "dqn"], "unknown --algo 'dqn' (choose from pqn, ppo)"),
    (["--num-envs", "0"], "--num-envs must be at least 1, got 0"),
    (["--suite", "/nonexistent/suite.jsonl"], "suite file not found: /nonexistent/suite.jsonl"),
    (["--relabel", "gpt"], "--relabel 'gpt' is not available (choose from none, narrator, llm, narrator+llm)"),
    (["--relabel", "llm"], "--relabel llm needs --llm-url (an OpenAI-compatible server, or local)"),
    (["--relabel", "narrator+llm"], "--relabel narrator+llm needs --llm-url (an OpenAI-compatible server, or local)"),
    (["--relabel", "narrator", "--reward", "cosine"], "unknown --reward 'cosine' (choose from verified, similarity)"),
    (["--relabel", "narrator", "--max-task-steps", "2000"],
     "--relabeling.history (1024) must exceed --max-task-steps (2000)"),
    (["--algo", "pqn", "--relabel", "none", "--encoder", "hash", "--num-envs", "3", "--pqn.num-minibatches", "5"],
     "num_envs x num_steps (48) must divide into 5 minibatches"),
    (["--achievement-bonus", "0.5", "--achievement-bonus-counts", "-1"],
     "--achievement-bonus-counts must be at least 1 with a bonus (the plain bonus was retired), got -1"),
    (["--achievement-bonus-counts", "0"],
     "--achievement-bonus-counts must be at least 1 with a bonus (the plain bonus was retired), got 0"),
    (["--algo", "pqn", "--relabeling.world-span", "2000"],
     "--relabeling.world-span must be in [0, 1008] (--relabeling.history 1024 less the rollout's 16 steps), got 2000"),
    (["--relabeling.world-span", "1000"],
     "--relabeling.world-span must be in [0, 960] (--relabeling.history 1024 less the rollout's 64 steps), got 1000"),
    (["--labels", "1.5"], "--labels must be a share in [0, 1], got 1.5"),
    (["--relabel", "none", "--labels", "0"], "--relabel none trains on human labels only: it needs --labels above 0"),
    (["--network", "medium"], "--network medium was retired (it measured negative): nothing replaces it"),
    (["--network", "huge"], "unknown --network 'huge' (choose from small, purejaxql)"),
])
def test_bad_train_config_is_one_line(tmp_path, capsys, args, message):
    assert main(["train", "--steps", "64", "--out", str(tmp_path / "run"), *args]) == 2
    assert capsys.readouterr().err.strip() == f"oir: error: {message}"


def test_watkins_cuts_the_trace_after_a_non_greedy_action():
    from oir.pqn import PQNConfig, trace_lambda

    q = jnp.array([[[0.0, 1.0]], [[1.0, 0.0]], [[0.0, 2.0]], [[0.0, 0.5]]])  # [T=4, B=1, A=2]
    action = jnp.array([[1], [1], [1], [1]])  # greedy, not greedy, greedy, greedy
    lam = np.asarray(trace_lambda(PQNConfig(lam=0.5, relabel_trace="watkins"), q, action))[:, 0]
    assert lam.tolist() == [0.0, 0.5, 0.5, 0.5]  # step 0's target stops before step 1's action
    assert np.asarray(trace_lambda(PQNConfig(lam=0.5, relabel_trace="onestep"), q, action)).sum() == 0
    assert (np.asarray(trace_lambda(PQNConfig(lam=0.5), q, action)) == 0.5).all()  # peng
    reward, done = jnp.array([[0.0], [0.0], [0.0], [1.0]]), jnp.array([[0], [0], [0], [1]], bool)
    q_max = q.max(-1)
    g = np.asarray(lambda_returns(reward, done, q_max, jnp.zeros(1), 0.9, jnp.asarray(lam)[:, None]))[:, 0]
    assert g[0] == pytest.approx(0.9 * 1.0)  # cut: r_0 + gamma max_a Q(s_1)
    assert g[3] == pytest.approx(1.0)  # the terminal step's reward
    assert g[2] == pytest.approx(0.9 * (0.5 * g[3] + 0.5 * 0.5))
    assert g[1] == pytest.approx(0.9 * (0.5 * g[2] + 0.5 * 2.0))


def _windows():
    """A tiny actor-critic and ``[3, 2]`` relabeled windows: two instructions, some steps masked."""
    from oir.networks import NETWORKS, ActorCritic

    net = ActorCritic(5, NETWORKS["small"])
    obs = jnp.asarray(RNG.normal(size=(3, 2, 8)), jnp.float32)
    emb = jnp.asarray(RNG.normal(size=(4, 6)), jnp.float32)
    params = net.init(jax.random.PRNGKey(0), obs[0], emb[:2])
    task, action = jnp.array([[1, 2]] * 3), jnp.array([[0, 3], [4, 1], [2, 2]])
    mask = jnp.array([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    return net, params, emb, obs, task, action, mask


def test_hindsight_bc_loss_imitates_the_windows_actions_under_their_instruction_only_where_unmasked():
    from oir.ppo import hindsight_bc_loss

    net, params, emb, obs, task, action, mask = _windows()
    logits, _ = net.apply(params, obs, emb[task])
    logp = np.take_along_axis(np.asarray(jax.nn.log_softmax(logits)), np.asarray(action)[..., None], -1)[..., 0]
    want = -(logp * np.asarray(mask)).sum() / 4
    assert float(hindsight_bc_loss(net, params, emb, obs, task, action, mask)) == pytest.approx(want, rel=1e-5)
    # A masked step (another instruction's, before the segment began) has no gradient.
    g = jax.grad(lambda o: hindsight_bc_loss(net, params, emb, o, task, action, mask))(obs)
    assert float(jnp.abs(g[0, 1]).sum()) == 0.0 and float(jnp.abs(g[0, 0]).sum()) > 0.0
    # No unmasked step: no loss (not a division by zero).
    assert float(hindsight_bc_loss(net, params, emb, obs, task, action, jnp.zeros_like(mask))) == 0.0


def test_timeout_values_are_zero_without_a_timeout():
    boot = timeout_values(toy_value, OBS, LAST_OBS, TASK, np.zeros_like(TIMEOUT))
    assert not np.asarray(boot).any() and boot.dtype == jnp.float32


@pytest.mark.parametrize("max_task_steps", [2, 3, 5, 16])
def test_timeout_values_from_the_timed_out_steps_alone_equal_the_whole_rollout_pass(max_task_steps):
    """With the time limit known, only the steps that timed out go through the network: the same
    bootstrap as the whole-rollout pass, for every pattern of timeouts the limit allows, including
    one at the rollout's last step (whose next observation is the rollout's last) and the most
    there can be."""
    rng = np.random.default_rng(max_task_steps)
    steps, n = 8, 5
    obs = rng.normal(size=(steps, n, 3)).astype(np.float32)
    last = rng.normal(size=(n, 3)).astype(np.float32)
    task = rng.integers(0, 4, (steps, n)).astype(np.int32)
    for trial in range(20):
        timed_out = np.zeros((steps, n), bool)
        for e in range(n):  # timeouts at least max_task_steps apart, as the env makes them
            t = int(rng.integers(0, max_task_steps)) if trial % 2 else 0
            while t < steps:
                timed_out[t, e] = rng.random() < 0.8 or trial % 4 == 1
                t += max_task_steps + int(rng.integers(0, 2)) * (trial % 3)
        timed_out[steps - 1, trial % n] = not timed_out[max(steps - max_task_steps, 0):steps - 1, trial % n].any()
        whole = np.asarray(timeout_values(toy_value, obs, last, task, timed_out))
        alone = np.asarray(timeout_values(toy_value, obs, last, task, timed_out, max_task_steps))
        np.testing.assert_allclose(alone, whole, rtol=1e-6)
        assert (alone != 0).sum() == timed_out.sum()
