"""A head-to-head campaign: every strategy with every seed, then the references and the report.

::

    python -m evo_nos.campaign --strategy evo rl random --seeds 0 1 2 \\
        --preset cpu --data imagefolder:/data/cifar10 --budget 40
    # the same, through the search command:
    python -m evo_nos.run --strategy evo rl random --seeds 0 1 2 --preset cpu --budget 40

All searches share the preset, the budget and the space (the point of a head-to-head);
each is an ordinary search with its own MLflow run and its own checkpoint folder
``<out>/campaign-<preset>-budget<B>/<strategy>-seed<S>/``.  They run one after the other,
seed by seed (all strategies with seed 0, then seed 1, ...), so a campaign stopped early
still compares the strategies on the seeds it finished.

Stopping and continuing: Ctrl+C saves the search in progress (see :mod:`evo_nos.search`)
and ends the campaign; running the same command again skips the finished searches,
resumes the interrupted one in its MLflow run, and goes on.  A search can also be
resumed alone: ``python -m evo_nos.run --resume RUN_ID --out <out>/campaign-...``.

After the searches: the reference rules are scored for every seed
(:mod:`evo_nos.experiments.references`; reused when already logged) and the report is built from
exactly the campaign's runs (:mod:`evo_nos.experiments.compare`), written to
``<out>/campaign-<preset>-budget<B>/report/`` and logged as a ``kind=compare`` run.

Every option of ``python -m evo_nos.run`` applies (the strategy settings such as
``--population`` go to the strategies that take them); ``--strategy`` takes several
names, ``--seeds`` several seeds.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from evo_nos.core.known import REFERENCE_NAMES
from evo_nos.core.primitives import RuleSettings
from evo_nos.experiments.compare import compare, safe_name
from evo_nos.experiments.references import score_references
from evo_nos.fitness.baselines import baseline_factory
from evo_nos.fitness.factory import joblib_backend, make_backend
from evo_nos.fitness.tasks import default_preset, preset_key
from evo_nos.operators.space import SearchSpace
from evo_nos.search import (CHECKPOINT_FILE, DONE, PREVIOUS_FILE, HallOfFame, Search,
                            load_checkpoint, seed_everything)
from evo_nos.search.defaults import (DEFAULT_HALL_OF_FAME, DEFAULT_OUT, default_batch_size,
                                     default_budget, funnel_settings)
from evo_nos.strategies import make_strategy, strategy_names, strategy_settings
from evo_nos.tracking import DEFAULT_EXPERIMENT, Tracker
# what must agree between a campaign and a checkpoint it finds in its folder
MUST_AGREE = ("preset", "fitness", "data", "strategy_args", "space_args", "experiment",
              "funnel", "hurdle", "rule_settings")


@dataclass
class CampaignPlan:
    """What a campaign runs; every search gets the same preset, budget and space."""

    strategies: tuple
    seeds: tuple = (0,)
    preset: str | None = None               # a preset name or a .toml path
    fitness: str | None = None              # standin:TARGET instead of training
    budget: int | None = None               # default: the preset's (search.defaults)
    data: str | None = None
    device: str = "auto"
    n_jobs: int = 1
    joblib_backend: str = "loky"
    scheduler: str | None = None
    batch_size: int | None = None
    hall_of_fame: int = DEFAULT_HALL_OF_FAME
    time_limit: float | None = None          # per search, seconds
    strategy_args: dict = field(default_factory=dict)
    space_args: dict = field(default_factory=dict)
    funnel: dict = field(default_factory=dict)  # Search's funnel_* / final_* (defaults: FUNNEL)
    hurdle: float | None = None             # the backend's hurdle quantile (None: none)
    rule_settings: dict = field(default_factory=dict)  # RuleSettings fields that change
    experiment: str = DEFAULT_EXPERIMENT
    tracking_uri: str | None = None
    out: Path = Path(DEFAULT_OUT)
    references: tuple = REFERENCE_NAMES      # () scores none
    baselines: tuple = ()                    # torch optimizers beside them (fitness.baselines)
    report: bool = True
    report_out: Path | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        self.strategies = tuple(self.strategies)
        self.seeds = tuple(int(s) for s in self.seeds)
        if not self.strategies:
            raise ValueError("a campaign needs at least one strategy")
        unknown = [s for s in self.strategies if s not in strategy_names()]
        if unknown:
            raise ValueError(f"unknown strategy {unknown}; choose from {strategy_names()}")
        if len(set(self.strategies)) < len(self.strategies) or \
                len(set(self.seeds)) < len(self.seeds) or not self.seeds:
            raise ValueError("give each strategy and each seed once (and at least one seed)")
        if self.preset is None and self.fitness is None:
            self.preset = default_preset()
        self.budget = self.budget or default_budget(self.preset_key)
        if self.budget < 1:
            raise ValueError(f"budget must be >= 1 child training, got {self.budget}")
        self.out = Path(self.out)
        self.references = tuple(self.references)
        self.baselines = tuple(self.baselines)
        for name in self.baselines:
            baseline_factory(name)                     # an unknown one is refused, by name
        if self.baselines and self.fitness is not None:
            raise ValueError("baselines need the real fitness (a --preset), not "
                             f"{self.fitness}")
        self.funnel = funnel_settings(self.funnel)
        self.rule_settings = dict(self.rule_settings)
        RuleSettings.from_dict(self.rule_settings)     # a bad one is refused, by name

    @property
    def preset_key(self) -> str:
        """The preset's name as searches log it (``cpu``, or ``standin:TARGET``)."""
        return preset_key(self.preset) if self.preset else self.fitness

    @property
    def folder(self) -> Path:
        return self.out / f"campaign-{safe_name(self.preset_key)}-budget{self.budget}"

    def checkpoint_dir(self, strategy: str, seed: int) -> Path:
        return self.folder / f"{strategy}-seed{seed}"

    def settings_for(self, strategy: str) -> dict:
        """The strategy settings this strategy takes (others are for other strategies)."""
        return {k: v for k, v in self.strategy_args.items() if k in strategy_settings(strategy)}

    def config(self, strategy: str, seed: int) -> dict:
        """The search config, in the shape ``python -m evo_nos.run`` writes (so that
        ``--resume`` works on a campaign's search too)."""
        return {
            "seed": seed, "preset": self.preset_key, "preset_source": self.preset,
            "fitness": self.fitness, "data": self.data, "device": self.device,
            "n_jobs": self.n_jobs, "joblib_backend": self.joblib_backend,
            "strategy_args": self.settings_for(strategy), "space_args": dict(self.space_args),
            "experiment": self.experiment, "campaign": self.folder.name,
            "funnel": dict(self.funnel), "hurdle": self.hurdle,
            # only when given, so campaigns from before the setting existed still agree
            **({"rule_settings": dict(self.rule_settings)} if self.rule_settings else {}),
        }


PLAN_KEYS = tuple(f.name for f in dataclasses.fields(CampaignPlan))


def load_plan_file(path: str | Path) -> dict:
    """The CampaignPlan fields a TOML file sets (``runs/head-to-head-cpu.toml``); unknown
    keys are refused, naming the valid ones."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ValueError(f"campaign file {path} does not exist")
    with open(path, "rb") as fh:
        try:
            values = tomllib.load(fh)
        except tomllib.TOMLDecodeError as err:
            raise ValueError(f"{path} is not valid TOML: {err}") from None
    unknown = sorted(set(values) - set(PLAN_KEYS))
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in {path}; valid keys: {list(PLAN_KEYS)}")
    for key in ("strategies", "seeds", "references", "baselines"):
        if key in values:
            values[key] = tuple(values[key])
    return values


@dataclass
class SearchOutcome:
    strategy: str
    seed: int
    run_id: str | None
    status: str
    trainings: float        # compute spent against the budget, in child trainings
    checkpoint: Path
    how: str                      # new | resumed | done before
    best_rule: str | None = None
    best_fitness: float | None = None


@dataclass
class CampaignResult:
    status: str                   # finished | interrupted
    searches: list
    references: list = field(default_factory=list)
    report: object = None          # evo_nos.experiments.compare.Report

    @property
    def run_ids(self) -> list:
        return [s.run_id for s in self.searches if s.run_id]


def _check_strategy_args(plan: CampaignPlan) -> None:
    taken = set().union(*(strategy_settings(s) for s in plan.strategies))
    unused = sorted(set(plan.strategy_args) - taken)
    if unused:
        raise ValueError(f"no strategy of this campaign takes the setting(s) {unused}")


def _check_same(plan: CampaignPlan, state: dict, strategy: str, seed: int, where: Path) -> None:
    mine = plan.config(strategy, seed)
    theirs = state["config"]
    differ = [k for k in MUST_AGREE if mine.get(k) != theirs.get(k)]
    if state["budget"] != plan.budget:
        differ.append("budget")
    if differ:
        raise ValueError(f"{where} holds a {strategy} seed {seed} search with other settings "
                         f"({', '.join(f'{k}: {theirs.get(k, state.get(k))!r}' for k in differ)})"
                         "; give another --out or remove that folder")


def _one_search(plan: CampaignPlan, strategy_name: str, seed: int) -> SearchOutcome:
    directory = plan.checkpoint_dir(strategy_name, seed)
    state = None
    if (directory / CHECKPOINT_FILE).is_file() or (directory / PREVIOUS_FILE).is_file():
        state = load_checkpoint(directory)
        _check_same(plan, state, strategy_name, seed, directory)
        if state["status"] in DONE:
            best = state["hall_of_fame"]
            outcome = SearchOutcome(strategy_name, seed, state["run_id"], state["status"],
                                    state.get("compute", state["trainings"]), directory,
                                    "done before")
            hof = HallOfFame(best["size"])
            hof.load_state_dict(best)
            if hof.best is not None:
                outcome.best_rule, outcome.best_fitness = hof.best.rule, hof.best.fitness
            return outcome
    config = plan.config(strategy_name, seed) if state is None else dict(state["config"])
    for key in ("device", "n_jobs"):            # how it runs may change between sessions
        config[key] = getattr(plan, key)
    strategy = make_strategy(strategy_name, SearchSpace(**config["space_args"]), seed,
                             **config["strategy_args"])
    backend = make_backend(dict(config, preset=config.get("preset_source")))
    tracker = Tracker(experiment=plan.experiment, tracking_uri=plan.tracking_uri)
    if state is not None:
        search = Search.resume(directory, strategy, backend, tracker=tracker,
                               progress=plan.progress)
        how = "resumed"
    else:
        seed_everything(seed)
        batch = plan.batch_size or default_batch_size(plan.n_jobs)
        search = Search(strategy, backend, budget=plan.budget, time_limit=plan.time_limit,
                        batch_size=batch, hall_of_fame_size=plan.hall_of_fame,
                        checkpoint_dir=directory, tracker=tracker, progress=plan.progress,
                        config=config, export_settings=config.get("rule_settings"),
                        **config["funnel"])
        how = "new"
    result = search.run()
    best = result.best
    return SearchOutcome(strategy_name, seed, result.run_id, result.status, result.compute,
                         directory, how, best.rule if best else None,
                         best.fitness if best else None)


def run_campaign(plan: CampaignPlan, *, echo=print) -> CampaignResult:
    """Run (or continue) every search of ``plan``, then references and report."""
    _check_strategy_args(plan)
    plan.folder.mkdir(parents=True, exist_ok=True)
    outcomes = []
    total = len(plan.strategies) * len(plan.seeds)
    with joblib_backend(plan.joblib_backend, plan.n_jobs, plan.scheduler, plan.device):
        for seed in plan.seeds:
            for strategy in plan.strategies:
                echo(f"[{len(outcomes) + 1}/{total}] {strategy} seed {seed} "
                     f"({plan.checkpoint_dir(strategy, seed)})")
                outcome = _one_search(plan, strategy, seed)
                outcomes.append(outcome)
                best = "" if outcome.best_rule is None else \
                    f", best {outcome.best_fitness:.4f} {outcome.best_rule}"
                echo(f"    {outcome.how}: {outcome.status}, {outcome.trainings:.1f}/"
                     f"{plan.budget} trainings of compute{best}")
                if outcome.status == "interrupted":
                    return CampaignResult("interrupted", outcomes)
        result = CampaignResult("finished", outcomes)
        if plan.references or plan.baselines:
            result.references = _references(plan, echo)
    if plan.report:
        result.report = compare(plan.experiment, plan.tracking_uri, run_ids=result.run_ids,
                                out=plan.report_out or plan.folder / "report")
    return result


def _references(plan: CampaignPlan, echo) -> list:
    out = []
    for seed in plan.seeds:
        config = plan.config(plan.strategies[0], seed)
        backend = make_backend(dict(config, preset=plan.preset))
        refs = score_references(backend, preset=plan.preset_key, seed=seed,
                                names=plan.references, baselines=plan.baselines,
                                experiment=plan.experiment,
                                tracking_uri=plan.tracking_uri)
        how = f"scored {len(refs.scored)}" if refs.scored else "reused"
        echo(f"references seed {seed}: {how} (MLflow run {refs.run_id})")
        out.append(refs)
    return out
