"""loco_lib: mechanistic knowledge localization in text-to-image diffusion models.

Implements Basu, Rezaei et al., "On Mechanistic Knowledge Localization in Text-to-Image Generative
Models" (ICML 2024). One module per concept:

* :mod:`loco_lib.models`       - real checkpoints by short name and their offline tiny twins
* :mod:`loco_lib.architectures` - full-size architectures on the meta device
* :mod:`loco_lib.layers`       - the cross-attention layer map (Sec. 5.1, App. D)
* :mod:`loco_lib.text`         - text conditioning c of a prompt per pipeline family
* :mod:`loco_lib.hooks`        - record and patch any state by name: the one mechanism every experiment uses
* :mod:`loco_lib.altered`      - altered inputs (Sec. 5.1.1)
* :mod:`loco_lib.generate`     - generation with CFG, seeds and altered inputs (Eq. 1)
* :mod:`loco_lib.clip_score`   - CLIP-score (Hessel et al. 2021)
* :mod:`loco_lib.prompts`      - prompt sets of App. C, J, K.1, L with validation
* :mod:`loco_lib.tokens`       - the last subject token (Sec. 6, 7)
* :mod:`loco_lib.sweep`        - batched, resumable sweep engine
* :mod:`loco_lib.trace`        - causal tracing of UNet and text-encoder states (Sec. 4, App. A)
* :mod:`loco_lib.diffquickfix` - DiffQuickFix: closed-form edit of the text encoder's causal state (App. I)
* :mod:`loco_lib.locogen`      - LocoGen: the layer-window search (Sec. 5.1.2, Algorithm 1, App. G)
* :mod:`loco_lib.locoedit`     - LocoEdit: closed-form K/V editing (Sec. 6, App. F, H)
* :mod:`loco_lib.neurons`      - neuron-level editing (Sec. 7, App. K)
* :mod:`loco_lib.plots`        - image grids and layer-map figures
* :mod:`loco_lib.evaluate`     - CLIP-score of an (edited) model on an attribute's prompts (Fig. 8)
* :mod:`loco_lib.paper`        - the locations the paper reports
* :mod:`loco_lib.settings`     - run settings (steps, guidance, seeds, ...) checked in one place
* :mod:`loco_lib.registry`     - model cards: what the core asks about a model it does not know by name

The model organism is a wing on top of this core, :mod:`loco_lib.organism` (world, model, training,
scorer, protocol, figures); no core module imports it. Importing ``loco_lib`` imports the wing last,
which registers its models.
"""
__version__ = "0.1.0"

from .altered import altered_inputs  # noqa: E402,F401
from .clip_score import ClipScorer, clip_score  # noqa: E402,F401
from .errors import LocoError  # noqa: E402,F401
from .generate import generate  # noqa: E402,F401
from .hooks import Patch, Record, Site, hooks  # noqa: E402,F401
from .layers import cross_attention_layers, format_layers, layer_table  # noqa: E402,F401
from .models import known_models, load  # noqa: E402,F401
from .text import encode  # noqa: E402,F401
from .locoedit import Edit, compute_edit  # noqa: E402,F401
from .locogen import locogen, select_m  # noqa: E402,F401
from .neurons import k_sweep, neurons_replaced, rank_neurons  # noqa: E402,F401
from .prompts import load_pairs  # noqa: E402,F401
from .evaluate import evaluate  # noqa: E402,F401
from . import diffquickfix, paper, trace  # noqa: E402,F401

from . import organism  # noqa: E402,F401  (the wing: registers the organisms' model cards)
