"""Settings: every flag of the three scripts declared once (its default, kind, valid range
and help), grouped by phase, and the one mechanism that turns a command line and a recipe
file's section into their values. Numbers and choices are checked, JSON settings (--rates,
--bits, --unit-rates, --round-settings, ...) are parsed and checked by one code path, and
every error is one line naming the flag (and the recipe file, for a recipe's value)."""
import argparse
import copy
import dataclasses
import json
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, NoReturn

from net.activations import STATISTICS
from net.models import DATASETS, MODELS
from net.quantization import INITS, check_bits
from net.structured import CONV_GRANULARITIES, FC_GRANULARITIES, NORMS, SCOPES
from recipe import datasets
from util import fail

RECIPE_SECTIONS = ('pruning', 'weight_share', 'huffman_encode')
MAX_INT = 2**63 - 1  # what torch's integers hold


class SettingError(ValueError):
    """A setting's value is not valid: the message names the setting and what it must be."""


class Json(NamedTuple):
    """The kind of a JSON setting: check(value, flag) returns the checked value or raises
    SettingError; example shows a valid value."""
    check: Callable
    example: str


class Setting(NamedTuple):
    """One setting: its flag, default, kind (int, float, str, bool or Json) and valid values.
    A recipe section names it by its key: the flag without dashes, '-' as '_'."""
    flag: str
    default: object = None
    kind: object = str
    help: str = ''
    metavar: str | None = None
    choices: Sequence | None = None
    low: float | None = None  # the lowest valid value
    high: float | None = None  # the highest
    above: bool = False  # low itself is not valid
    many: bool = False  # the flag takes one or more values

    @property
    def key(self) -> str:
        """The setting's name in a recipe section and in the settings object."""
        return self.flag[2:].replace('-', '_')


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the project's one-line errors (`error: ...`, exit status 2) instead of
    the usage text; --help still shows it."""

    def error(self, message: str) -> NoReturn:
        """Exit with one line: the problem, and where the flags are explained."""
        fail(f'{message} (see {self.prog} --help)')


# ---------------------------------------------------------------- from flags and recipes
def add_flags(parser: argparse.ArgumentParser, settings: Sequence[Setting]) -> None:
    """The settings' flags on parser. They collect the text given (or True for an on/off
    flag) and nothing when absent: values() converts and checks."""
    for s in settings:
        if s.kind is bool:
            parser.add_argument(s.flag, action='store_true', default=argparse.SUPPRESS,
                                help=s.help or None)
        else:
            parser.add_argument(s.flag, default=argparse.SUPPRESS, metavar=s.metavar,
                                choices=s.choices, help=s.help or None, nargs='+' if s.many else None)


def parse(cls: type, argv: Sequence[str] | None, section: str, description: str,
          overrides: dict | None = None, source: str = 'settings') -> Any:
    """A script's settings object (cls) from argv (flags win), `overrides` (a recipe
    section's form; errors name `source`), the --config recipe's `section`, then the
    defaults; every value converted and checked."""
    settings = flags_of(cls)
    parser = ArgumentParser(description=description)
    add_flags(parser, settings)
    parser.add_argument('--config', default=None, metavar='FILE',
                        help='a recipe (e.g. configs/best.json): its section for this script sets '
                             'the defaults; flags given on the command line still win')
    given = vars(parser.parse_args(argv))
    config = given.pop('config')
    recipe = read_recipe(config, section, settings) | checked(settings, overrides or {}, source, section)
    try:
        values = values_of(settings, given, recipe)
    except SettingError as err:  # a flag's text: the recipe's values are checked already
        parser.error(str(err))
    return cls(**values, config=config)


def values_of(settings: Sequence[Setting], given: dict, recipe: dict) -> dict:
    """{key: value} of every setting, in declared order: the flag's text converted if
    given, else the recipe's (already checked) value, else the default."""
    values = {}
    for s in settings:
        if s.key in given:
            values[s.key] = from_text(s, given[s.key])
        else:  # a copy: a default list or dict is never shared between runs
            values[s.key] = copy.deepcopy(recipe.get(s.key, s.default))
    return values


def from_text(setting: Setting, text: str | list | bool) -> Any:
    """A flag's value from its command-line text (a list of them, for `many`), checked."""
    if setting.many:
        return [from_text(setting._replace(many=False), one) for one in text]
    if setting.kind is bool or text is True:
        return True
    if isinstance(setting.kind, Json):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as err:
            raise SettingError(f'{setting.flag}: not valid JSON ({err.msg}): {text}; '
                               f'e.g. {setting.kind.example}') from None
        return setting.kind.check(value, setting.flag)
    if setting.kind in (int, float):
        try:
            value = setting.kind(text)
        except ValueError:
            raise SettingError(f'argument {setting.flag}: invalid {setting.kind.__name__} value: '
                               f"'{text}'") from None
        return in_range(setting, value)
    if callable(setting.kind) and setting.kind is not str:  # a text format of its own
        try:
            return setting.kind(text)
        except ValueError as err:
            raise SettingError(f'argument {setting.flag}: {err}') from None
    return text


def comma_list(kind: type) -> Callable:
    """The kind of a setting given as comma-separated numbers, e.g. 100,50,25."""
    def parse(text):
        try:
            return tuple(kind(x) for x in text.split(','))
        except ValueError:
            raise ValueError(f'not a comma-separated list of {kind.__name__}: {text}') from None
    return parse


def from_recipe(setting: Setting, value: Any, source: str) -> Any:
    """A recipe's value of setting, checked as the command line's would be."""
    if isinstance(setting.kind, Json):
        if value is None and setting.default in (None, {}):  # null: not set
            return copy.deepcopy(setting.default)
        try:
            if isinstance(value, str):  # JSON as the command line gives it
                return from_text(setting, value)
            return setting.kind.check(value, setting.flag)
        except SettingError as err:
            raise SettingError(f'{source}: {err}') from None
    number = _is_number(value)
    if setting.kind is bool:
        valid = isinstance(value, bool)
    elif setting.kind in (int, float):
        valid = number and (setting.kind is float or float(value).is_integer())
        value = setting.kind(value) if valid else value
    else:
        # null only where the default is (the command line cannot say null)
        valid = (value is None and setting.default is None) or isinstance(value, str) or number
        value = value if value is None else str(value)
    if not valid or (setting.choices and value not in setting.choices):
        raise SettingError(f'{source}: "{setting.key}": {json.dumps(value)} is not a valid value '
                           f'for {setting.flag}')
    return in_range(setting, value)


def in_range(setting: Setting, value: Any) -> Any:
    """value, if within the setting's range (NaN never is)."""
    if setting.low is None or value is None or not isinstance(value, (int, float)):
        return value
    low, high = setting.low, setting.high
    if not ((isinstance(value, int) or math.isfinite(value))  # an int of any size is finite
            and (value > low if setting.above else value >= low)
            and (high is None or value <= high)):
        valid = (f'above {low} and at most {high}' if high is not None and setting.above else
                 f'from {low} to {high}' if high is not None else
                 f'above {low}' if setting.above else f'at least {low}')
        raise SettingError(f'{setting.flag} must be {valid}, got {value}')
    if isinstance(value, int) and value > MAX_INT:
        raise SettingError(f'{setting.flag} must be at most {MAX_INT}, got {value}')
    return value


def checked(settings: Sequence[Setting], section_values: dict, source: str, section: str) -> dict:
    """{key: checked value} of a recipe section's settings (keys may spell '_' as '-')."""
    by_key = {s.key: s for s in settings}
    values = {}
    for key, value in section_values.items():
        name = key.replace('-', '_')
        if name not in by_key:
            fail(f'{source}: unknown setting "{key}" for {section}.py; valid: {sorted(by_key)}')
        try:
            values[name] = from_recipe(by_key[name], value, source)
        except SettingError as err:
            fail(err)
    return values


def read_recipe(path: str | None, section: str, settings: Sequence[Setting]) -> dict:
    """The checked settings of one script's section of a recipe file ({} without one)."""
    if path is None:
        return {}
    try:
        with open(path) as f:
            recipe = json.load(f)
    except OSError as err:
        fail(f'cannot read the recipe {path}: {err.strerror}')
    except json.JSONDecodeError as err:
        fail(f'the recipe {path} is not valid JSON ({err.msg}, line {err.lineno})')
    except UnicodeDecodeError:
        fail(f'the recipe {path} is not a UTF-8 text file')
    if not isinstance(recipe, dict):
        fail(f'the recipe {path} must be a JSON object with sections {list(RECIPE_SECTIONS)}')
    unknown = sorted(set(recipe) - set(RECIPE_SECTIONS) - {'description'})
    if unknown:
        fail(f'unknown section(s) {unknown} in {path}; valid: {list(RECIPE_SECTIONS)}')
    values = recipe.get(section, {})
    if not isinstance(values, dict):
        fail(f'the recipe {path}: section "{section}" must be a JSON object of settings, '
             f'got {json.dumps(values)}')
    return checked(settings, values, path, section)


# ---------------------------------------------------------------- JSON settings
def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def layer_numbers(what: str, example: str) -> Json:
    """A JSON object of layer -> number (`what` each number is); the layer names and the
    numbers' range are checked against the model later (net.prune.validate_rates)."""
    def check(value, flag):
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise SettingError(f'{flag} must be a JSON object of layer -> {what}, e.g. {example}; '
                               f'got {json.dumps(value)}')
        return value
    return Json(check, example)


def _spans(value, flag):
    layer_numbers('share of the rounds', '{"fc2": 0.25}').check(value, flag)
    for name, span in value.items():
        if not _is_number(span) or not 0 < span <= 1:
            raise SettingError(f'{flag}: {name} is {span!r}; it must be above 0 and at most 1')
    return value


def _epochs_list(value, flag):
    epochs = value if isinstance(value, list) else [value]
    if not epochs or not all(_is_number(n) and n >= 0 and float(n).is_integer() for n in epochs):
        raise SettingError(f'{flag}: {json.dumps(value)} is neither a number of epochs nor a JSON '
                           'list of them, e.g. 6 or [3, 3, 6]')
    return [int(n) for n in epochs]


def _bits(value, flag):
    try:
        if isinstance(value, dict):
            return {name: check_bits(bits) for name, bits in value.items()}
        return check_bits(value)
    except ValueError as err:
        raise SettingError(f'{flag}: {err}') from None


def json_object(what: str, example: str) -> Json:
    """Any JSON object (`what` it is)."""
    def check(value, flag):
        if not isinstance(value, dict):
            raise SettingError(f'{flag}: {what} is a JSON object, e.g. {example}; got {json.dumps(value)}')
        return value
    return Json(check, example)


def _round_settings(value, flag):
    """{first round: {setting: value}}, each value checked as the pruning section's."""
    json_object('each round\'s settings', ROUND_SETTINGS_EXAMPLE).check(value, flag)
    by_key = {s.key: s for s in flags_of(Retraining) if s.key in ROUND_SETTINGS}
    rounds = {}
    for start, values in value.items():
        if not (start.isascii() and start.isdigit() and int(start) >= 1 and isinstance(values, dict)):
            raise SettingError(f'{flag}: each key is a round number from 1, each value a JSON '
                               f'object of settings, e.g. {ROUND_SETTINGS_EXAMPLE}; '
                               f'got "{start}": {json.dumps(values)}')
        fixed = sorted({key.replace('-', '_') for key in values} - set(ROUND_SETTINGS))
        if fixed:
            raise SettingError(f'{flag}: {fixed} cannot change by round; these can: {list(ROUND_SETTINGS)}')
        rounds[int(start)] = {key.replace('-', '_'): from_recipe(by_key[key.replace('-', '_')], v,
                                                                 f'{flag} (round {start})')
                              for key, v in values.items()}
    return rounds


# ---------------------------------------------------------------- the settings, by phase
# Each phase is a frozen dataclass whose fields are its settings; setting() declares a
# field's flag (the field's name with '-' for '_'), default, kind, help and range once.
def setting(default: Any = None, kind: Any = str, help: str = '', metavar: str | None = None,
            **limits) -> Any:
    """A settings field: its default, kind (int, float, str, bool, a Json or a text
    parser) and help; limits as Setting's (choices, low, high, above, many)."""
    declared = Setting('', default, kind, help, metavar, **limits)
    if isinstance(default, (list, dict)):  # a fresh copy for every settings object
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default),
                                 metadata={'setting': declared})
    return dataclasses.field(default=default, metadata={'setting': declared})


def flags_of(cls: type) -> list[Setting]:
    """The Settings of a phase (or of a script's settings class), in field order."""
    return [f.metadata['setting']._replace(flag='--' + f.name.replace('_', '-'))
            for f in dataclasses.fields(cls) if 'setting' in f.metadata]


phase = dataclasses.dataclass(frozen=True)

# The starter's recipe: --schedule constant --lr 0.001 --batch-size 50 --epochs 100
# --re-epochs 30 --prune std --sensitivity 2. These defaults fit a full run of the three
# scripts in about an hour on a 2-core CPU.
LR = {'adam': 1e-3, 'sgd': 0.005}     # peak of the one-cycle schedule
RE_LR = {'adam': 3e-4, 'sgd': 0.002}  # peak for retraining after pruning
WEIGHT_DECAY = {'adam': 1e-4, 'sgd': 5e-4}  # Adam's is the starter's
# What --round-settings may change from a round on.
ROUND_SETTINGS = ('re_lr', 're_augment', 're_weight_decay')
ROUND_SETTINGS_EXAMPLE = '{"15": {"re_augment": "flip", "re_lr": 0.001}}'
OPTIMIZERS = ('adam', 'sgd')
AUGMENTATIONS = tuple(datasets.AUGMENTATIONS)
UNIT_CRITERIA = ('weight', *STATISTICS)


@phase
class InitialTraining:
    """pruning.py's initial training."""
    epochs: int = setting(20, int, 'initial training epochs', 'N', low=0)
    optimizer: str = setting('adam', choices=OPTIMIZERS,
                             help='adam (the starter\'s) or sgd with Nesterov momentum')
    lr: float | None = setting(None, float, f'(peak) learning rate; default {LR}', 'LR', low=0,
                               above=True)
    weight_decay: float | None = setting(None, float, f'default {WEIGHT_DECAY}', 'WD', low=0)
    schedule: str = setting('onecycle', choices=('onecycle', 'constant'),
                            help='one-cycle learning rate per phase, or the starter\'s constant rate')
    batch_size: int = setting(256, int, metavar='N', low=1)
    test_batch_size: int = setting(1000, int, metavar='N', low=1)
    bf16: bool = setting(False, bool, 'train in bfloat16 autocast (mixed precision): about 1.5x '
                         'faster on CPUs with AVX512-BF16 or AMX and on recent GPUs; weights and '
                         'test accuracy stay float32')
    log_interval: int = setting(10, int, 'batches between progress-bar updates', 'N', low=1)


@phase
class Retraining:
    """pruning.py's retraining after each cut (the round's --round-settings change it)."""
    re_epochs: int = setting(8, int, 'retraining epochs', 'N', low=0)
    re_optimizer: str | None = setting(None, choices=OPTIMIZERS,
                                       help='optimizer of the retraining phases; default: --optimizer')
    re_lr: float | None = setting(None, float, f'(peak) retraining learning rate; default {RE_LR}',
                                  'LR', low=0, above=True)
    re_weight_decay: float | None = setting(
        None, float, 'weight decay of the retraining phases; default: --weight-decay when both '
        'phases use the same optimizer, else that optimizer\'s default', 'WD', low=0)
    re_augment: str = setting('crop-flip', choices=AUGMENTATIONS,
                              help='augmentation of the training images in the retraining phases '
                                   '(the initial training always crops and flips): crop-flip, '
                                   'flip only, or none')
    compact_training: bool = setting(
        False, bool, 'retrain a smaller copy holding only the units that some later weight reads '
        '(same function and gradients; several times faster once pruning leaves most units '
        'unread); implies --prune-dead-units')


@phase
class Cuts:
    """What each of pruning.py's cuts removes."""
    prune: str = setting('percentile', choices=('percentile', 'std'),
                         help='percentile: keep --rates percent per layer; std: threshold '
                              'std*sensitivity')
    sensitivity: float = setting(2, float, 's of prune_by_std', low=0)
    rates: dict | None = setting(
        None, layer_numbers('percent kept', '{"fc1": 5, "fc2": 3}'), 'percent KEPT per layer, '
        'e.g. \'{"fc1": 5, "fc2": 3}\' (others keep the paper\'s defaults for the model)', 'JSON')
    granularity: str = setting('element', choices=CONV_GRANULARITIES,
                               help='what percentile pruning removes from conv layers: single '
                                    'weights, whole kernels, input channels or filters')
    fc_granularity: str = setting('element', choices=FC_GRANULARITIES,
                                  help='what percentile pruning removes from fc layers: weights, '
                                       'rows or columns')
    norm: str = setting('l1', choices=NORMS, help='score of a structure')
    scope: str = setting('local', choices=SCOPES,
                         help='local: --rates per layer; global: one threshold across layers, '
                              'keeping --global-rate percent of all weights')
    global_rate: float | None = setting(None, float, 'with --scope global: percent of all weights '
                                        'kept', 'P', low=0, high=100, above=True)
    unit_rates: dict | None = setting(
        None, layer_numbers('percent of its units kept', '{"fc1": 2, "fc2": 1.5}'),
        'percent of a layer\'s output units kept, e.g. \'{"fc1": 2, "fc2": 1.5}\': after each cut, '
        'the least salient units (L1 of incoming x outgoing weights) lose all their weights, on '
        'the same schedule as --rates', 'JSON')
    prune_dead_units: bool = setting(False, bool, 'after each cut, also zero the incoming weights '
                                     'of units that no later weight reads (the network computes '
                                     'the same function)')
    fold_constant_units: bool = setting(False, bool, 'after each cut, fold units left without '
                                        'incoming weights (constant outputs) into the next fc '
                                        'layer\'s bias and drop their outgoing weights')
    unit_criterion: str = setting('weight', choices=UNIT_CRITERIA,
                                  help='what ranks the units of --unit-rates and the filters and '
                                       'fc rows of --granularity filter / --fc-granularity row: '
                                       'weight norms, or activations over --calibration-images '
                                       '(mean absolute activation, L2 norm of the feature map)')
    similarity: float | None = setting(None, float, 'after each cut, also remove one unit of each '
                                       'pair whose activations over --calibration-images have a '
                                       'cosine similarity of at least S', 'S', low=0, high=1,
                                       above=True)
    calibration_images: int = setting(1024, int, 'the first N training images (not augmented): '
                                      'what the activation criteria read', 'N', low=1)


@phase
class Rounds:
    """pruning.py's iterative pruning and its stop rules."""
    prune_rounds: int = setting(1, int, 'iterative pruning: N prune + retrain rounds toward '
                                '--rates, each keeping the same fraction of the weights left '
                                '(percentile only)', 'N', low=1)
    round_spans: dict | None = setting(
        None, Json(_spans, '{"fc2": 0.25}'), 'per layer, the share of the rounds after which it '
        'reaches its rate, e.g. \'{"fc2": 0.25}\' (default 1: the last round)', 'JSON')
    round_epochs: list = setting(
        [2], Json(_epochs_list, '[3, 3, 6]'), 'retraining epochs after each round but the last '
        '(which gets --re-epochs): a number, or a JSON list of one per round, whose last entry '
        'holds for the later rounds, e.g. \'[3, 3, 6]\'', 'N')
    round_settings: dict = setting(
        {}, Json(_round_settings, ROUND_SETTINGS_EXAMPLE), 'retraining settings that change '
        f'from a given round on (its final epochs included), e.g. \'{ROUND_SETTINGS_EXAMPLE}\'; '
        'a later round\'s replace an earlier one\'s. Settings: ' + ', '.join(ROUND_SETTINGS), 'JSON')
    round_report: bool = setting(False, bool, 'after each round, also weight-share a copy (5 bits) '
                                 'and report its accuracy and homework-format compression ratio')
    target_ratio: float | None = setting(
        None, float, 'end the pruning rounds early, at the first round whose cut brings a 5-bit '
        'weight-shared copy to this homework-format compression ratio', 'R', low=1, above=True)
    min_accuracy: float | None = setting(
        None, float, 'end the pruning rounds early: when a round\'s retrained accuracy falls '
        'below A percent, go back to the round before and give it --re-epochs', 'A', low=0,
        high=100)
    time_limit: float | None = setting(
        None, float, 'end the pruning rounds early when, judged by the last round, another '
        'round and its --re-epochs would end after MINUTES from the start; the last round then '
        'gets --re-epochs', 'MINUTES', low=0, above=True)


@phase
class PruningFiles:
    """pruning.py's checkpoints."""
    load_model_path: str = setting('saves/initial_model.ptmodel', help='the initial model: '
                                   'written after initial training, read with --from-initial')
    save_model_path: str = setting('saves/model_after_retraining.ptmodel')
    from_initial: bool = setting(False, bool, 'skip initial training and start from '
                                 '--load-model-path')


@phase
class WeightSharing:
    """weight_share.py: k-means per layer, then optionally trained quantization."""
    load_model_path: str = setting('saves/model_after_retraining.ptmodel')
    save_model_path: str = setting('saves/model_after_weight_sharing.ptmodel')
    bits: int | dict = setting(5, Json(_bits, '{"fc1": 3, "fc2": 2}'), '2**bits shared values per '
                               'layer (1..16), or JSON per layer, e.g. \'{"fc1": 3, "fc2": 2}\' '
                               '(unnamed layers: 5)')
    init: str = setting('linear', choices=INITS, help='centroid initialisation of k-means (the '
                        'paper\'s three; linear: the slides\')')
    bias_bits: int | None = setting(None, int, 'also weight-share each layer\'s live biases: '
                                    '2**B values by k-means, zeros stay zero (off: float biases, as '
                                    'in the homework)', 'B', low=1, high=16)
    grid_bits: int | None = setting(None, int, 'snap every layer\'s shared values (and shared '
                                    'biases) to a fixed-point grid of its own: B-bit integers '
                                    'times a power of two, kept there by trained quantization',
                                    'B', low=2, high=24)
    quantize_epochs: int = setting(0, int, 'trained quantization: fine-tune the shared values (and '
                                   'biases) for N epochs, assignments and zeros fixed (0: off, as '
                                   'in the homework)', 'N', low=0)
    quantize_lr: float = setting(1e-4, float, 'peak (one-cycle) Adam learning rate of trained '
                                 'quantization', 'LR', low=0, above=True)
    quantize_augment: str = setting('crop-flip', choices=AUGMENTATIONS,
                                    help='augmentation of the training images in trained '
                                         'quantization (as pruning.py --re-augment): crop-flip, '
                                         'flip only, or none')
    batch_size: int = setting(256, int, 'batch size of trained quantization', 'N', low=1)


@phase
class Encoding:
    """huffman_encode.py: the homework format, and the .dcz file."""
    load_model_path: str = setting('saves/model_after_weight_sharing.ptmodel')
    out: str = setting('encodings/', help='directory of the encodings')
    pack: str | None = setting(None, metavar='PATH', help='also write the model as one compressed '
                               '.dcz file and test it loaded back')
    pack_float16: bool = setting(False, bool, 'lossy: store codebooks and biases of the .dcz file '
                                 'as float16')
    pack_bias_bits: int | None = setting(None, int, 'lossy: weight-share each layer\'s biases in '
                                         'the .dcz file (2**B non-zero values; zeros stay zero)',
                                         'B', low=1, high=16)
    unpack: str | None = setting(None, metavar='PATH', help='only load a .dcz file and test its '
                                 'accuracy')
    export: str | None = setting(None, metavar='OUT.pt', help='with --unpack: also write the '
                                 'compact network of its live units (net/export.py) and test it')


@phase
class Seed:
    """The seed of the scripts that train."""
    seed: int = setting(42, int, metavar='S', low=0, high=2**32 - 1)


@phase
class Run:
    """The device and the log, which every script has."""
    no_cuda: bool = setting(False, bool, 'disables CUDA')
    log: str = setting('log.txt', help='log file name')


CHECKPOINTS = 'default: the checkpoint\'s; given, it must match'


@phase
class Data:
    """The network, the dataset and the copy of it; weight_share.py and huffman_encode.py
    take the model and dataset the loaded checkpoint records (given, they must match)."""
    model: str | None = setting(None, choices=sorted(MODELS), help=CHECKPOINTS)
    dataset: str | None = setting(None, choices=sorted(DATASETS), help=CHECKPOINTS)
    data_dir: str | None = setting(None, metavar='DIR', help='an offline copy instead of the '
                                   f'torchvision download: {datasets.OFFLINE_LAYOUTS}')
    subset: int | None = setting(None, int, 'use only N train and N test images (smoke runs)',
                                 'N', low=1)


@phase
class NewData(Data):
    """pruning.py's data: it builds the model."""
    model: str = setting('alexnet', choices=sorted(MODELS), help='the network (default alexnet)')
    dataset: str = setting('cifar10', choices=sorted(DATASETS), help='the data (default cifar10)')


@phase
class TestData(Data):
    """huffman_encode.py's data: only the test split."""
    subset: int | None = setting(None, int, 'test on N images only', 'N', low=1)


@phase
class Recipe:
    """The recipe file whose section set the defaults."""
    config: str | None = None  # the --config file, if any (parse() adds the flag)


# A script's settings: its phases' fields, flat (args.re_lr). Dataclasses collect the
# fields of the last base first, so the bases are listed in reverse: the log shows them
# in the phases' order.
@phase
class PruningSettings(Recipe, NewData, Run, Seed, PruningFiles, Rounds, Cuts, Retraining,
                      InitialTraining):
    """pruning.py's settings."""


@phase
class WeightSharingSettings(Recipe, Data, Run, Seed, WeightSharing):
    """weight_share.py's settings."""


@phase
class EncodingSettings(Recipe, TestData, Run, Encoding):
    """huffman_encode.py's settings."""


@dataclasses.dataclass(frozen=True)
class Training:
    """The settings of one training phase: pruning.py's initial training or its retraining
    after each cut (from --re-* and the round's --round-settings), or weight_share.py's
    trained quantization."""
    optimizer: str
    lr: float
    weight_decay: float
    augment: str
    schedule: str
    batch_size: int
    test_batch_size: int
    log_interval: int
    bf16: bool
    compact: bool  # train a compact copy of a pruned model (net.compact)


def initial_training(args: PruningSettings) -> Training:
    """The initial training's settings of pruning.py's args (it always crops and flips)."""
    return Training(args.optimizer, args.lr, args.weight_decay, 'crop-flip', args.schedule,
                    args.batch_size, args.test_batch_size, args.log_interval, args.bf16,
                    args.compact_training)


def retraining(args: PruningSettings, changes: dict | None = None) -> Training:
    """The retraining's settings of pruning.py's args, with a round's --round-settings
    `changes` ({setting: value}) in effect."""
    args = dataclasses.replace(args, **(changes or {}))
    return Training(args.re_optimizer, args.re_lr, args.re_weight_decay, args.re_augment,
                    args.schedule, args.batch_size, args.test_batch_size, args.log_interval,
                    args.bf16, args.compact_training)


def quantization(args: WeightSharingSettings) -> Training:
    """The trained quantization's settings of weight_share.py's args: Adam without weight
    decay, one cycle, the initial training's test batch and log interval."""
    return Training('adam', args.quantize_lr, 0, args.quantize_augment, 'onecycle',
                    args.batch_size, InitialTraining.test_batch_size,
                    InitialTraining.log_interval, False, False)


PRUNING_DESCRIPTION = 'Train, prune and retrain AlexNet on CIFAR-10 (or --model on --dataset)'


def pruning_settings(argv: Sequence[str] | None = None, overrides: dict | None = None,
                     source: str = 'settings') -> PruningSettings:
    """pruning.py's settings from argv, `overrides` ({setting: value} as in a recipe's pruning
    section; errors name `source`) and --config's section, with the defaults that follow
    from others filled in."""
    args = parse(PruningSettings, argv, 'pruning', PRUNING_DESCRIPTION, overrides, source)
    if (args.scope == 'global') != (args.global_rate is not None):
        fail('--scope global and --global-rate P go together (P: percent of all weights kept)')
    if args.unit_criterion != 'weight':
        if args.prune == 'std':
            fail('--unit-criterion ranks units and structures: use it with --prune percentile')
        if args.scope == 'global':
            fail('--unit-criterion ranks the units within each layer: use --scope local')
        if not (args.unit_rates or args.granularity == 'filter' or args.fc_granularity == 'row'):
            fail('--unit-criterion ranks units: use it with --unit-rates, --granularity filter '
                 'or --fc-granularity row')
    re_optimizer = args.re_optimizer or args.optimizer
    same = re_optimizer == args.optimizer
    lr = LR[args.optimizer] if args.lr is None else args.lr
    if args.re_lr is not None:
        re_lr = args.re_lr
    elif args.schedule == 'constant':
        re_lr = lr if same else LR[re_optimizer]
    else:
        re_lr = RE_LR[re_optimizer]
    weight_decay = WEIGHT_DECAY[args.optimizer] if args.weight_decay is None else args.weight_decay
    if args.re_weight_decay is not None:
        re_weight_decay = args.re_weight_decay
    else:
        re_weight_decay = weight_decay if same else WEIGHT_DECAY[re_optimizer]
    # A compact copy leaves unread units out: their incoming weights must go at every cut
    # (which changes nothing the network computes), or they would stay frozen.
    return dataclasses.replace(args, re_optimizer=re_optimizer, lr=lr, re_lr=re_lr,
                               weight_decay=weight_decay, re_weight_decay=re_weight_decay,
                               prune_dead_units=args.prune_dead_units or args.compact_training)
