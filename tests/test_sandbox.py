"""The reward sandbox: a corpus of hostile and broken programs is rejected with precise
findings (stage, message, line), quickly and without harming this process; real reward
programs run unchanged on real environments and read the simulator's true values."""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from rewardlab.reward.program import RewardProgram, RewardProgramError, RewardRuntimeError
from rewardlab.reward.sandbox import Finding
from rewardlab.tasks import get_task
from rewardlab.tasks.proxies import Group
from rewardlab.wrappers import compile_for_task, env_proxy, make_env

HOPPER = get_task("mujoco/hopper_forward")
ANT = get_task("mujoco/ant_forward")


def fn(body: str, *, before: str = "", params: str = "self, action") -> str:
    """``before`` + ``def compute_dense_reward(params):`` + indented ``body``."""
    body = textwrap.indent(textwrap.dedent(body).strip("\n"), "    ")
    return f"{textwrap.dedent(before)}def compute_dense_reward({params}):\n{body}\n"


NP = "import numpy as np\n"


@dataclass
class Case:
    """A program and the finding it must produce.

    ``when`` is "static" (compiling, or loading it, which runs its module-level code, raises
    :class:`RewardProgramError`: before any call) or "runtime" (calling the program on a real
    state raises :class:`RewardRuntimeError`).
    """

    id: str
    source: str
    when: str
    stage: str
    phrase: str
    line: int | None = None
    compile_kwargs: dict[str, Any] = field(default_factory=dict)


S, R = "static", "runtime"

CORPUS = [
    # --- escaping the sandbox: imports, builtins, introspection
    Case("import_os", "import os\n" + fn("return 0.0"), S, "static", "import of 'os' is not allowed", 1),
    Case("import_sys_inside", fn("import sys\nreturn 0.0"), S, "static", "import of 'sys' is not allowed", 2),
    Case("import_subprocess", "import subprocess\n" + fn("return 0.0"), S, "static", "import of 'subprocess' is not allowed", 1),
    Case("import_numpy_private", "import numpy.core._multiarray_umath\n" + fn("return 0.0"), S, "static", "importing private module", 1),
    Case("from_os_import_system", "from os import system\n" + fn("return 0.0"), S, "static", "import from 'os' is not allowed", 1),
    Case("dunder_import", fn("m = __import__('os')\nreturn 0.0"), S, "static", "use of '__import__' is not allowed", 2),
    Case("open_passwd", fn("open('/etc/passwd').read()\nreturn 0.0"), S, "static", "use of 'open' is not allowed", 2),
    Case("eval", fn("return eval('1 + 1')"), S, "static", "use of 'eval' is not allowed", 2),
    Case("exec", fn("exec('x = 1')\nreturn 0.0"), S, "static", "use of 'exec' is not allowed", 2),
    Case("compile", fn("c = compile('1', '<x>', 'eval')\nreturn 0.0"), S, "static", "use of 'compile' is not allowed", 2),
    Case("getattr_class", fn("c = getattr(self, '__class__')\nreturn 0.0"), S, "static", "use of 'getattr' is not allowed", 2),
    Case("class_mro", fn("m = self.__class__.__mro__\nreturn 0.0"), S, "static", "dunder attribute '__mro__'", 2),
    Case("tuple_subclasses", fn("s = ().__class__.__bases__[0].__subclasses__()\nreturn 0.0"), S, "static", "dunder attribute '__subclasses__'", 2),
    Case("format_dunder", fn("s = '{0.__class__}'.format(self)\nreturn 0.0"), S, "static", "attribute 'format' is not allowed", 2),
    Case("fstring_dunder", fn("s = f'{self.__class__}'\nreturn 0.0"), S, "static", "dunder attribute '__class__'", 2),
    Case("generator_frame_walk", fn("g = (x for x in [])\nf = g.gi_frame.f_back\nreturn 0.0"), S, "static", "attribute 'gi_frame' is not allowed", 3),
    Case("globals", fn("g = globals()\nreturn 0.0"), S, "static", "use of 'globals' is not allowed", 2),
    Case("type_self", fn("t = type(self)\nreturn 0.0"), S, "static", "use of 'type' is not allowed", 2),
    Case("object_dtype_name", NP + fn("a = np.array([1], dtype=object)\nreturn 0.0"), S, "static", "use of 'object' is not allowed", 3),
    Case("class_definition", "class Evil:\n    pass\n" + fn("return 0.0"), S, "static", "ClassDef is not allowed", 1),
    Case("with_statement", fn("with self:\n    pass\nreturn 0.0"), S, "static", "'with' statements are not allowed", 2),
    Case("global_statement", "COUNT = 0\n" + fn("global COUNT\nCOUNT = COUNT + 1\nreturn 0.0"), S, "static", "'global' statements are not allowed", 3),
    Case("assign_env_attribute", fn("self.dt = 0.0\nreturn 0.0"), S, "static", "the environment is read-only", 2),
    Case("bare_except_swallows_budget", fn("while True:\n    try:\n        pass\n    except:\n        pass\nreturn 0.0"), S, "static", "bare 'except:'", 5),
    Case("except_base_exception", fn("try:\n    pass\nexcept BaseException:\n    pass\nreturn 0.0"), S, "static", "bare 'except:' / 'except BaseException'", 4),
    Case("np_fromfile", NP + fn("a = np.fromfile('/etc/passwd')\nreturn 0.0"), S, "static", "attribute 'fromfile' is not allowed", 3),
    Case("np_load", NP + fn("a = np.load('/etc/passwd')\nreturn 0.0"), S, "static", "attribute 'load' is not allowed", 3),
    Case("ndarray_tofile", NP + fn("np.zeros(3).tofile('/tmp/pwned')\nreturn 0.0"), S, "static", "attribute 'tofile' is not allowed", 3),
    # --- broken programs
    Case("syntax_error", fn("x = (1 +\nreturn 0.0"), S, "syntax", "was never closed", 2),
    Case("break_outside_loop", fn("break"), S, "syntax", "'break' outside loop", 2),
    Case("missing_entry", "def reward(self, action):\n    return 0.0\n", S, "static", "no top-level function compute_dense_reward"),
    Case("wrong_signature", fn("return 0.0", params="self"), S, "static", "must take (self, action) or (self, action, obs)", 1),
    Case("varargs_signature", fn("return 0.0", params="self, *args"), S, "static", "must take (self, action) or (self, action, obs)", 1),
    Case("unknown_attribute", fn("x = 1.0\nreturn self.hopper.tpo.position_x"), S, "static", "self.hopper.tpo is not defined by the environment card", 3),
    Case("unknown_field", fn("return self.hopper.top.velocity_y"), S, "static", "self.hopper.top.velocity_y is not defined", 2),
    Case("returns_string", fn("return 'high'"), R, "output", "reward must be a number, got str"),
    Case("returns_nan", fn("return float('nan')"), R, "output", "reward is not finite (nan)"),
    Case("returns_inf", fn("return float('inf')"), R, "output", "reward is not finite (inf)"),
    Case("returns_huge", fn("return 1e9"), R, "output", "exceeds 10000 per step"),
    Case("returns_reward_and_list", fn("return 1.0, [1.0]"), R, "output", "a tuple return must be (reward, {name: value})"),
    Case("returns_nan_component", fn("return 1.0, {'x': float('nan')}"), R, "output", "component 'x' is not finite"),
    Case("zero_division_on_some_states", fn("""
        v = self.hopper.top.velocity_x
        if v > 0.0:
            return 1.0 / (v - v)
        return v
    """), R, "runtime", "ZeroDivisionError", 4),
    Case("proxy_alias_unknown", fn("h = self.hopper\nreturn h.tpo.position_x"), R, "runtime", "self.hopper has no attribute 'tpo'", 3),
    # --- denial of service: CPU
    Case("while_true", fn("x = 0\nwhile True:\n    x += 1\nreturn 0.0"), R, "timeout", "reward program exceeded its ", 3),
    Case("except_exception_cannot_swallow_budget", fn("while True:\n    try:\n        pass\n    except Exception:\n        pass\nreturn 0.0"), R, "timeout", "reward program exceeded its ", 2),
    Case("finally_loop", fn("try:\n    while True:\n        pass\nfinally:\n    while True:\n        pass\nreturn 0.0"), R, "timeout", "reward program exceeded its ", 6),
    Case("recursion_bomb", "def f(n):\n    return f(n + 1)\n" + fn("return f(0)"), R, "runtime", "RecursionError"),
    Case("exponential_lambda_recursion", fn("fib = lambda n: n if n < 2 else fib(n - 1) + fib(n - 2)\nreturn float(fib(60))"), R, "timeout", "reward program exceeded its ", 2),
    Case("comprehension_bomb", fn("return float(sum([i for i in range(10**6) for j in range(10**6)]))"), R, "timeout", "reward program exceeded its ", 2),
    Case("heavy_loop_body", NP + fn("a = np.ones(10**6)\nfor i in range(100000):\n    a = np.sqrt(a + 1.0)\nreturn 0.0"), R, "timeout", "time budget of 0.3 s", 4, {"seconds": 0.3}),
    Case("module_level_loop", "X = 0\nwhile True:\n    X = X + 1\n" + fn("return 0.0"), S, "static", "top-level While is not allowed", 2),
    Case("module_level_budget", "X = [i for i in range(10**6) for j in range(10**6)]\n" + fn("return 0.0"), S, "timeout", "reward program exceeded its ", 1),
    Case("int_pow_huge", fn("x = 2 ** 10**9\nreturn 0.0"), R, "runtime", "integer power 2**1000000000 is too large", 2),
    Case("int_lshift_huge", fn("x = 1 << 10**9\nreturn 0.0"), R, "runtime", "integer shift by 1000000000 bits is too large", 2),
    Case("builtin_pow_huge", fn("x = pow(10, 10**8)\nreturn 0.0"), R, "runtime", "integer power 10**100000000 is too large", 2),
    Case("int_square_loop", fn("x = 2 ** 4000\nfor i in range(40):\n    x = x * x\nreturn 0.0"), R, "runtime", "integer product of 4001 and 4001 bits is too large", 4),
    Case("int_small_pow_loop", fn("x = 3\nfor i in range(40):\n    x = x ** 2\nreturn 0.0"), R, "runtime", "integer power", 4),
    Case("int_augmented_pow_loop", fn("x = 3\nfor i in range(40):\n    x **= 2\nreturn 0.0"), R, "runtime", "integer power", 4),
    Case("int_shift_loop", fn("x = 1\nfor i in range(100000):\n    x = x << 4000\nreturn 0.0"), R, "runtime", "integer shift by 4000 bits is too large", 4),
    Case("math_factorial", "import math\n" + fn("return float(math.factorial(10**6) % 7)"), R, "runtime", "math.factorial arguments above 1000 are not allowed", 3),
    Case("math_prod_big_ints", "import math\n" + fn("return float(math.prod([2**4000] * 1000) % 7)"), R, "runtime", "integer product", 3),
    Case("range_sum", fn("return float(sum(range(10**12)))"), R, "runtime", "range would create 1,000,000,000,000 elements", 2),
    Case("sum_of_lists", fn("return float(len(sum([[0] * 1000] * 10**6, [])))"), R, "runtime", "sum() of lists/tuples is not allowed", 2),
    Case("np_power_big_int_list", NP + fn("x = np.power([2**70], 10**9)\nreturn 0.0"), R, "runtime", "71-bit integer would become an object array", 3),
    Case("astype_object_product", NP + fn("a = np.arange(3).astype('O') + 2**62\nfor i in range(40):\n    a = a * a\nreturn 0.0"), R, "runtime", "ndarray.astype: object dtypes are not allowed", 3),
    Case("prod_dtype_object", NP + fn("return float(np.full(10**6, 3).prod(dtype='O') % 7)"), R, "runtime", "ndarray.prod: object dtypes are not allowed", 3),
    Case("np_prod_dtype_dict", NP + fn("return float(np.prod(np.full(10**6, 3), None, dict) % 7)"), R, "runtime", "numpy.prod: object dtypes are not allowed", 3),
    # --- denial of service: memory
    Case("list_repeat", fn("x = [0] * 10**9\nreturn 0.0"), R, "runtime", "sequence repetition would create 1,000,000,000 elements", 2),
    Case("str_repeat", fn("x = 'a' * 10**9\nreturn 0.0"), R, "runtime", "sequence repetition would create 1,000,000,000 elements", 2),
    Case("np_ones", NP + fn("x = np.ones(10**9)\nreturn 0.0"), R, "runtime", "numpy.ones would create 1,000,000,000 elements", 3),
    Case("np_zeros_2d", NP + fn("x = np.zeros((10**5, 10**5))\nreturn 0.0"), R, "runtime", "numpy.zeros would create 10,000,000,000 elements", 3),
    Case("np_ones_like_shape", NP + fn("x = np.ones_like(np.zeros(3), shape=(10**5, 10**5))\nreturn 0.0"), R, "runtime", "numpy.ones_like would create", 3),
    Case("np_full_like_positional_shape", NP + fn("x = np.full_like(np.zeros(2), 1.0, None, 'K', True, (10**5, 10**5))\nreturn 0.0"), R, "runtime", "numpy.full_like would create", 3),
    Case("np_diag", NP + fn("x = np.diag(np.ones(10**6))\nreturn 0.0"), R, "runtime", "numpy.diag would create", 3),
    Case("np_stack_repeated", NP + fn("x = np.stack([np.ones(10**6)] * 10**6)\nreturn 0.0"), R, "runtime", "numpy.stack would create", 3),
    Case("ndarray_repeat_method", NP + fn("x = np.ones(10**6).repeat(10**6)\nreturn 0.0"), R, "runtime", "ndarray.repeat would create", 3),
    Case("np_void_dtype", NP + fn("x = np.zeros(1, 'V1000000000')\nreturn 0.0"), R, "runtime", "1000000000 bytes per element", 3),
    Case("ndarray_constructor", NP + fn("x = np.ndarray((10**5, 10**5))\nreturn 0.0"), R, "runtime", "numpy.ndarray(...) is not available", 3),
    # --- attribute reads the grammar hides: match class patterns (one rule for all of them)
    Case("match_kwd_array_ufunc", fn("match action:\n    case np.ndarray(__array_ufunc__=f):\n        return 0.0\nreturn 1.0"), S, "static", "match class pattern: access to private/dunder attribute '__array_ufunc__'", 3),
    Case("match_kwd_str_format", fn("match 'x':\n    case str(format=f):\n        return 0.0\nreturn 1.0"), S, "static", "match class pattern: attribute 'format' is not allowed", 3),
    Case("match_kwd_dump", fn("match action:\n    case np.ndarray(dump=d):\n        return 0.0\nreturn 1.0"), S, "static", "attribute 'dump' is not allowed", 3),
    Case("match_kwd_class", fn("x = action\nmatch x:\n    case float(__class__=C):\n        return 0.0\nreturn 1.0"), S, "static", "'__class__'", 4),
    Case("match_positional_reads_match_args", fn("match action:\n    case np.ndarray(a):\n        return 0.0\nreturn 1.0"), S, "static", "positional sub-patterns of a class pattern", 3),
    Case("import_private_member", "from numpy import _core\n" + fn("return 0.0"), S, "static", "importing '_core': access to private/dunder attribute", 1),
    # --- object arrays, by any route
    Case("ndarray_clip_object_dtype", NP + fn("a = np.zeros(3).clip(0, 1, dtype='O')\nreturn 0.0"), R, "runtime", "ndarray.clip: object dtypes are not allowed", 3),
    Case("int64_plus_big_int_list", NP + fn("a = np.int64(1) + [2**70]\nreturn 0.0"), R, "runtime", "+: the result would be an object array", 3),
    Case("divide_by_big_int_list", NP + fn("a = np.ones(3) / [2**70]\nreturn 0.0"), R, "runtime", "/: the result would be an object array", 3),
    Case("augmented_object_array", NP + fn("a = np.int64(1)\na -= [2**70]\nreturn 0.0"), R, "runtime", "-: the result would be an object array", 4),
    Case("int_literal_too_wide", fn("x = 123456789012345678901234567890\nreturn 0.0"), S, "static", "integer literal wider than 64 bits", 2),
    # --- huge strings and sequences
    Case("fstring_format_width", fn("s = f'{1:>{10**9}}'\nreturn 0.0"), R, "runtime", "format spec: field width 1000000000 is above 10,000", 2),
    Case("percent_format_width", fn("s = '%1000000000d' % 1\nreturn 0.0"), R, "runtime", "% formatting: field width 1000000000", 2),
    Case("percent_format_star", fn("s = '%*d' % (10**9, 1)\nreturn 0.0"), R, "runtime", "'*' field widths are not allowed", 2),
    Case("str_ljust", fn("s = 'a'.ljust(10**9)\nreturn 0.0"), R, "runtime", "str.ljust would create 1,000,000,000 elements", 2),
    Case("str_replace_blowup", fn("s = ('a' * 10**6).replace('a', 'a' * 1000)\nreturn 0.0"), R, "runtime", "str.replace would create", 2),
    Case("str_join_blowup", fn("s = ','.join(['a' * 10**6] * 100)\nreturn 0.0"), R, "runtime", "str.join would create", 2),
    Case("list_extend_doubling", fn("x = [0.0]\nfor i in range(40):\n    x.extend(x)\nreturn 0.0"), R, "runtime", "list.extend would create", 4),
    Case("concatenation_doubling", fn("s = 'ab'\nfor i in range(40):\n    s = s + s\nreturn 0.0"), R, "runtime", "concatenation would create", 4),
    Case("item_augmented_doubling", fn("x = ['ab']\nfor i in range(40):\n    x[0] += x[0]\nreturn 0.0"), R, "runtime", "concatenation would create", 4),
    Case("int_addition_doubling", fn("x = 1\nfor i in range(10000):\n    x = x + x\nreturn 0.0"), R, "runtime", "+: a 4097-bit integer is too large", 4),
    # --- outputs: any exception type is a counted failure; names that would overwrite keys
    Case("return_overflowing_int", fn("return 10**400"), R, "output", "int too large to convert to float"),
    Case("component_overflowing_int", fn("return 0.0, {'x': 10**400}"), R, "output", "int too large to convert to float"),
    Case("math_overflow", "import math\n" + fn("return math.exp(1000.0)"), R, "runtime", "OverflowError: math range error", 3),
    Case("component_named_env", fn("return 0.0, {'env': 1e3}"), R, "output", "component name 'env' is reserved"),
    Case("component_named_error", fn("return 0.0, {'error': 0.0}"), R, "output", "component name 'error' is reserved"),
    Case("component_name_with_slash", fn("return 0.0, {'a/../b': 0.0}"), R, "output", "component name 'a/../b' is not allowed"),
    Case("too_many_components", fn("return 0.0, {str(i): 0.0 for i in range(100)}"), R, "output", "100 components; at most 64"),
    Case("huge_exception_message", fn("raise ValueError('x' * 10**6)"), R, "runtime", "ValueError: xxxxxxxxxx", 2),
    # --- state between calls: module-level values and defaults are frozen, or refused
    Case("module_list_grows", "HISTORY = []\n" + fn("HISTORY.append(1.0)\nreturn 0.0"), R, "runtime", "'tuple' object has no attribute 'append'", 3),
    Case("module_dict_written", "SEEN = {}\n" + fn("SEEN['n'] = 1\nreturn 0.0"), R, "runtime", "'mappingproxy' object does not support item assignment", 3),
    Case("module_array_written", NP + "W = np.zeros(3)\n" + fn("W[0] = W[0] + 1.0\nreturn float(W[0])"), R, "runtime", "assignment destination is read-only", 4),
    Case("default_argument_state", "def seen(x, cache=[]):\n    cache.append(x)\n    return len(cache)\n" + fn("return float(seen(1))"), R, "runtime", "'tuple' object has no attribute 'append'", 2),
    Case("closure_state", "def make():\n    box = []\n    return lambda x: box.append(x)\nPUSH = make()\n" + fn("PUSH(1)\nreturn 0.0"), R, "runtime", "'tuple' object has no attribute 'append'", 3),
    Case("module_generator", "G = (i for i in range(10**6))\n" + fn("for v in G:\n    break\nreturn 0.0"), S, "static", "module-level name 'G' holds a generator object", 1),
    Case("module_iterator", "M = map(float, range(1000))\n" + fn("for v in M:\n    break\nreturn 0.0"), S, "static", "module-level name 'M' holds a map object", 1),
]  # fmt: skip


@pytest.fixture(scope="module")
def hopper() -> Iterator[tuple[gym.Env, Group]]:
    env = make_env(HOPPER)
    env.reset(seed=0)
    env.action_space.seed(0)
    yield env, env_proxy(env, HOPPER)
    env.close()


def _matches(finding: Finding, case: Case) -> bool:
    return (
        finding.stage == case.stage
        and case.phrase in finding.message
        and (case.line is None or finding.line == case.line)
    )


def _first_failure(program: RewardProgram, env: gym.Env, me: Group, steps: int = 200) -> Finding:
    """Step ``env`` with random actions until ``program`` fails on a state."""
    env.reset(seed=0)
    for _ in range(steps):
        action = env.action_space.sample()
        obs, _, terminated, truncated, _ = env.step(action)
        try:
            program(me, action, obs)
        except RewardRuntimeError as exc:
            return exc.finding
        if terminated or truncated:
            env.reset()
    raise AssertionError(f"the program never failed in {steps} steps")


def test_corpus_is_large_and_ids_are_unique() -> None:
    assert len(CORPUS) >= 25
    assert len({c.id for c in CORPUS}) == len(CORPUS)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("case", CORPUS, ids=[c.id for c in CORPUS])
def test_hostile_or_broken_program_is_rejected(case: Case, hopper: tuple[gym.Env, Group]) -> None:
    if case.when == "static":
        with pytest.raises(RewardProgramError) as info:
            compile_for_task(case.source, HOPPER, **case.compile_kwargs).fresh()
        findings = info.value.findings
        assert any(_matches(f, case) for f in findings), findings
        assert all(
            f.line is not None
            for f in findings
            if f.stage == "static" and "function" not in f.message
        )
    else:
        program = compile_for_task(case.source, HOPPER, **case.compile_kwargs)
        finding = _first_failure(program, *hopper)
        assert _matches(finding, case), finding
        if case.stage == "runtime" and case.line is None:  # recursion: somewhere in the program
            assert finding.line is not None


def test_unknown_attribute_lists_what_exists() -> None:
    with pytest.raises(RewardProgramError) as info:
        compile_for_task(fn("return self.hopper.tpo.position_x"), HOPPER)
    (finding,) = info.value.findings
    assert finding.line == 2
    assert "self.hopper.tpo" in finding.message
    assert re.search(r"self\.hopper has: .*\btop\b", finding.message)


def test_static_findings_report_every_problem_with_lines() -> None:
    source = "import os\n" + fn("x = eval('1')\nreturn self.hopper.tpo.position_x + x")
    with pytest.raises(RewardProgramError) as info:
        compile_for_task(source, HOPPER)
    lines = {(f.line, f.message.split(" ")[0]) for f in info.value.findings}
    assert {(1, "import"), (3, "use"), (4, "self.hopper.tpo")} <= lines
    assert "line 3" in str(info.value)


def test_program_cannot_change_what_the_agent_observes() -> None:
    src = fn(
        "obs[0] = 1000.0\naction[0] = 1000.0\nreturn float(obs[0])", params="self, action, obs"
    )
    env = make_env(HOPPER, compile_for_task(src, HOPPER))
    env.reset(seed=0)
    action = np.zeros(3, dtype=np.float32)
    obs, reward, *_ = env.step(action)
    assert reward == 1000.0  # the program saw its own write ...
    assert obs[0] == pytest.approx(env.unwrapped.data.qpos[1])  # type: ignore[attr-defined]
    assert action[0] == 0.0  # ... but the agent's obs and action are untouched
    env.close()


def test_ordinary_numpy_and_math_still_work(hopper: tuple[gym.Env, Group]) -> None:
    src = fn(
        """
        v = np.array([self.hopper.top.velocity_x, self.hopper.top.velocity_z])
        a = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0).astype(np.float32)
        assert isinstance(a, np.ndarray) and a.dtype == np.float32
        parts = [np.linalg.norm(v), np.mean(a), a.sum(), np.dot(v, v), v.std(), math.prod([2, 3])]
        parts += [np.concatenate([v, v]).size, np.zeros_like(v).sum(), np.diag(v).trace()]
        parts += [sum(x ** 2 for x in range(10)), 2 ** 10, 1 << 4, math.factorial(10) % 7]
        parts += [np.stack([v, v]).shape[0], np.outer(v, v).shape[1], v.repeat(2).size]
        parts += [np.repeat(np.array([2e6]), 1).size, np.full_like(v, 2.0).sum()]
        return float(sum(float(p) for p in parts)), {"speed": float(np.hypot(*v))}
        """,
        before="import math\nimport numpy as np\n",
    )
    env, me = hopper
    env.reset(seed=0)
    obs, *_ = env.step(np.full(3, 0.5, dtype=np.float32))
    reward, comps = compile_for_task(src, HOPPER)(me, np.full(3, 0.5), obs)
    v = np.array([env.unwrapped.data.qvel[0], env.unwrapped.data.qvel[1]])  # type: ignore[attr-defined]
    expected = (
        np.linalg.norm(v) + 0.5 + 1.5 + v @ v + v.std() + 6 + 4 + 0 + v.sum()
        + 285 + 1024 + 16 + 3628800 % 7 + 2 + 2 + 4 + 1 + 4
    )  # fmt: skip
    assert reward == pytest.approx(expected, rel=1e-6)
    assert comps["speed"] == pytest.approx(np.hypot(*v))


# --------------------------------------------------------------------------- real programs

HOPPER_PROGRAM = '''
import numpy as np

def compute_dense_reward(self, action):
    """Text2Reward-style Hopper reward: run forward, stay healthy, save energy."""
    forward_reward = 1.0 * self.hopper.top.velocity_x
    progress = self.hopper.top.velocity_x * self.dt
    is_healthy = 0.7 < self.hopper.top.position_z and abs(self.hopper.top_joint.angle) < 0.2
    healthy_reward = 1.0 if is_healthy else 0.0
    control_cost = 1e-3 * np.sum(np.square(action))
    posture = -0.1 * abs(self.hopper.thigh_joint.angle) - 0.01 * self.hopper.foot_joint.angular_velocity ** 2
    return float(forward_reward + 10.0 * progress + healthy_reward - control_cost + posture)
'''

ANT_PROGRAM = """
import numpy as np

def compute_dense_reward(self, action):
    forward = self.ant.torso.velocity_x
    upright = self.ant.torso.up_z
    height_cost = abs(self.ant.torso.position_z - 0.6)
    gait = self.ant.front_left_leg_joint.angle - self.ant.back_right_leg_joint.angle
    knee = self.ant.front_left_ankle_joint.angular_velocity
    drift = abs(self.ant.torso.velocity_y) + abs(self.ant.torso.position_y)
    ctrl = 0.5 * np.sum(np.square(action))
    return forward + 0.2 * upright - 0.5 * height_cost + 0.05 * gait - 0.001 * knee - 0.1 * drift - ctrl
"""


def _hopper_by_hand(data: Any, dt: float, action: np.ndarray) -> float:
    qpos, qvel = data.qpos, data.qvel  # [rootx, rootz, rooty, thigh, leg, foot]
    healthy = 1.0 if qpos[1] > 0.7 and abs(qpos[2]) < 0.2 else 0.0
    posture = -0.1 * abs(qpos[3]) - 0.01 * qvel[5] ** 2
    return float(
        qvel[0] + 10.0 * qvel[0] * dt + healthy - 1e-3 * np.sum(np.square(action)) + posture
    )


def _ant_by_hand(data: Any, action: np.ndarray) -> float:
    qpos, qvel = data.qpos, data.qvel  # root xyz, quat wxyz, then (hip, ankle) x 4 legs
    w, x, y, z = qpos[3:7]
    upright = 1 - 2 * (x * x + y * y) / (w * w + x * x + y * y + z * z)
    gait = qpos[7] - qpos[13]  # hip_1 (front left) - hip_4 (back right)
    knee = qvel[6 + 1]  # ankle_1 (front left): dofs are root (6), hip_1, ankle_1, ...
    drift = abs(qvel[1]) + abs(qpos[1])
    return float(
        qvel[0] + 0.2 * upright - 0.5 * abs(qpos[2] - 0.6) + 0.05 * gait - 0.001 * knee
        - 0.1 * drift - 0.5 * np.sum(np.square(action))
    )  # fmt: skip


def _world_angular_velocity(qpos: np.ndarray, qvel: np.ndarray) -> np.ndarray:
    """A free joint's angular velocity (body frame in qvel) rotated to the world frame by the
    orientation in qpos."""
    w, x, y, z = qpos[3:7] / np.linalg.norm(qpos[3:7])
    rot = np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])  # fmt: skip
    return rot @ qvel[3:6]


@pytest.mark.parametrize(
    ("task", "source", "by_hand"),
    [
        (HOPPER, HOPPER_PROGRAM, lambda env, a: _hopper_by_hand(env.unwrapped.data, env.unwrapped.dt, a)),
        (ANT, ANT_PROGRAM, lambda env, a: _ant_by_hand(env.unwrapped.data, a)),
    ],
    ids=["hopper", "ant"],
)  # fmt: skip
def test_real_program_runs_unchanged_and_reads_true_values(
    task: Any, source: str, by_hand: Any
) -> None:
    env = make_env(task, compile_for_task(source, task))
    env.reset(seed=1)
    env.action_space.seed(1)
    for _ in range(50):
        action = env.action_space.sample()
        _, reward, terminated, truncated, info = env.step(action)
        assert "reward/error" not in info
        # float32 actions make parts of the sum float32: agree to float32 precision
        assert reward == pytest.approx(by_hand(env, action), rel=1e-6, abs=1e-6)
        if terminated or truncated:
            env.reset()
    env.close()


def test_program_with_obs_argument() -> None:
    src = fn("return float(obs[0]) - 0.1 * float(obs[5]) + 0.0 * float(np.sum(action))", before=NP,
             params="self, action, obs")  # fmt: skip
    program = compile_for_task(src, HOPPER)
    assert program.takes_obs
    env = make_env(HOPPER, program)
    env.reset(seed=2)
    for _ in range(20):
        obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        qpos, qvel = env.unwrapped.data.qpos, env.unwrapped.data.qvel  # type: ignore[attr-defined]
        assert obs[0] == qpos[1]  # Hopper obs = qpos[1:] + clipped qvel
        assert reward == pytest.approx(qpos[1] - 0.1 * np.clip(qvel[0], -10, 10))
        if terminated or truncated:
            env.reset()
    env.close()


def test_program_with_components() -> None:
    src = fn("""
        forward = 2.0 * self.hopper.top.velocity_x
        alive = 1.0
        return forward + alive, {"forward": forward, "alive": alive}
    """)
    env = make_env(HOPPER, compile_for_task(src, HOPPER))
    env.reset(seed=3)
    for _ in range(10):
        _, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert info["reward/alive"] == 1.0
        assert info["reward/forward"] == pytest.approx(2.0 * env.unwrapped.data.qvel[0])  # type: ignore[attr-defined]
        assert reward == pytest.approx(info["reward/forward"] + 1.0)
        if terminated or truncated:
            env.reset()
    env.close()


def test_free_joint_angular_velocity_matches_current_state() -> None:
    env = make_env(ANT)
    env.reset(seed=1)
    env.action_space.seed(1)
    me = env_proxy(env, ANT)
    data: Any = env.unwrapped.data  # type: ignore[attr-defined]
    for _ in range(10):
        env.step(env.action_space.sample())
        expected = _world_angular_velocity(data.qpos, data.qvel)
        got = [
            me.ant.torso.angular_velocity_x,
            me.ant.torso.angular_velocity_y,
            me.ant.torso.angular_velocity_z,
        ]
        assert got == pytest.approx(expected, rel=1e-9, abs=1e-9)
    env.close()


def _simulator_state(env: gym.Env) -> np.ndarray:
    base = env.unwrapped
    if hasattr(base, "get_state"):  # ManiSkill3: every actor's and articulation's state
        return np.asarray(base.get_state(), dtype=np.float64).copy()
    import mujoco

    state = np.empty(mujoco.mj_stateSize(base.model, mujoco.mjtState.mjSTATE_FULLPHYSICS))
    mujoco.mj_getState(base.model, base.data, state, mujoco.mjtState.mjSTATE_FULLPHYSICS)
    return state


def _arrays_in(value: Any) -> list[np.ndarray]:
    if isinstance(value, np.ndarray):
        return [value]
    return [v for name in ("p", "q") if isinstance(v := getattr(value, name, None), np.ndarray)]


@pytest.mark.parametrize(
    "task_name",
    ["mujoco/hopper_forward", "mujoco/ant_forward", "metaworld/pick_place", "maniskill/pick_cube"],
)
def test_every_proxy_value_is_a_copy_never_a_view_of_the_simulator(task_name: str) -> None:
    """Writing into every array a reward program can read changes neither the simulator nor
    the next read: proxies hand out copies, never views into MjData (or the physics tensors)."""
    task = get_task(task_name)
    if task.benchmark == "maniskill":
        from rewardlab.tasks.maniskill import vulkan_problem

        if vulkan_problem() is not None:
            pytest.skip("no Vulkan device for ManiSkill3")
    env = make_env(task)
    try:
        env.reset(seed=0)
        env.action_space.seed(0)
        for _ in range(3):
            env.step(env.action_space.sample())
        me, card = env_proxy(env, task), task.load_card()
        before = _simulator_state(env)
        checked = 0
        for path in sorted(card.leaf_paths()):
            value: Any = me
            for part in path.split(".")[1:]:
                value = getattr(value, part)
            if callable(value):
                continue
            checked += 1
            for array in _arrays_in(value):
                original = array.copy()
                if array.flags.writeable:
                    array[...] = 1234.5
                again: Any = me
                for part in path.split(".")[1:]:
                    again = getattr(again, part)
                for fresh in _arrays_in(again):
                    assert np.array_equal(fresh, original) or fresh.shape != original.shape, path
        assert checked > 0
        np.testing.assert_array_equal(_simulator_state(env), before)
    finally:
        env.close()


def test_no_facade_or_builtin_reads_attributes_by_name() -> None:
    """The rule's other half: nothing reward code can call turns a string into an attribute
    access or code (getattr-, operator.attrgetter-, functools-style indirection)."""
    import builtins
    import functools
    import operator

    from rewardlab.reward.facades import ALLOWED_MODULES, Facade, facade
    from rewardlab.reward.sandbox import SAFE_BUILTINS
    from rewardlab.reward.vetting import attribute_problem

    indirect = {builtins.getattr, builtins.setattr, builtins.delattr, builtins.vars, builtins.dir,
                builtins.eval, builtins.exec, builtins.compile, builtins.open, builtins.__import__,
                builtins.globals, builtins.locals, builtins.format, operator.attrgetter,
                operator.methodcaller, operator.itemgetter, functools.partial, functools.reduce,
                np.vectorize, np.frompyfunc, np.load, np.save, np.fromfile}  # fmt: skip
    seen: list[str] = []

    def walk(obj: Any, path: str) -> None:
        for name in dir(obj):
            assert attribute_problem(name) is None, f"{path}.{name}"
            value = getattr(obj, name)
            seen.append(f"{path}.{name}")
            if isinstance(value, Facade):
                walk(value, f"{path}.{name}")
            else:
                assert not any(value is bad for bad in indirect), f"{path}.{name}"
                assert getattr(value, "__module__", "") not in ("operator", "functools"), (
                    f"{path}.{name}"
                )

    for root in ALLOWED_MODULES:
        walk(facade(root), root)
    for name, value in SAFE_BUILTINS.items():
        assert not any(value is bad for bad in indirect if bad is not builtins.__import__), name
    assert SAFE_BUILTINS["__import__"] is not builtins.__import__
    assert "numpy.linalg.norm" in seen and "scipy.spatial.distance.cdist" in seen
