"""MiniWoB++ as AgentTuning evaluated it: the 46 tasks, 10 recorded seeds each, and the RCI prompts.

The task pages ship in the ``miniwob`` wheel; the only upstream files are AgentTuning's
``eval_heldout/miniwob++`` task list (``available_tasks.txt``) and its RCI agent's prompt folder
(``prompt/``, with per-task folders; read at run time by :mod:`agent_gym.policies.rci`). Upstream
seeded each episode with ``random.random()`` (unseeded, so not reproducible); here episode ``k`` of a
task is played with seed ``k`` (:data:`SEEDS`), recorded in the episode id ``"<task>/<seed>"``.

A user's ``tasks_file`` has upstream's format: one task name per line, optionally followed by the
seeds to play (``click-test 3 7``; default: the 10 of :data:`SEEDS`).
"""

from __future__ import annotations

import ast
import dataclasses
import json
from functools import lru_cache
from pathlib import Path

from agent_gym import pysource
from agent_gym.data import DataFile, Dataset, dataset, require

UPSTREAM = "https://raw.githubusercontent.com/THUDM/AgentTuning/main/eval_heldout/miniwob%2B%2B/"
TASKS_FILE = "agenttuning/available_tasks.txt"
PROMPT_DIR = "agenttuning/prompt"
#: the RCI agent's opening instruction, a string in upstream's ``llm_agent.py`` (``BIG_PROMPT``),
#: derived from that script at fetch time (a local import of the prompt folder lacks it: optional)
BIG_PROMPT_FILE = "agenttuning/big_prompt.txt"
#: the seeds of a task's 10 episodes (upstream: ``--num-episodes 10``, unseeded)
SEEDS: tuple[int, ...] = tuple(range(10))

# sha256 and path (under eval_heldout/miniwob++/) of every file of AgentTuning's MiniWoB++ folder we read.
_FILES = """
ffa8b2a603abd9ede8eb686e87c4a433110f1be47d7cc98df4977b7fb2ee72fc  LICENSE
78c47918779b6f84e92f15501cc4eef648f75af1dc971f0313d404b4f4bb4c20  available_tasks.txt
7cba3b3e27f3b142965243d4c5c6b24e9d9b9c13fbc2e2defb7f39de120d36c6  prompt/action.txt
435434ed209b37ab0d35a412fbf1ac904f74ffc271a46f5eb6c885087d6eefb9  prompt/base.txt
7cba3b3e27f3b142965243d4c5c6b24e9d9b9c13fbc2e2defb7f39de120d36c6  prompt/choose-list/action.txt
435434ed209b37ab0d35a412fbf1ac904f74ffc271a46f5eb6c885087d6eefb9  prompt/choose-list/base.txt
e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  prompt/choose-list/example.txt
cd0251da91ff737a287cfaf046eb7cfa8cda72211280629ce63d97719dce5a7b  prompt/choose-list/first_action.txt
6b16076a70a655d15e37da22c882e560dda2755220248d13f4d6194c6c3f5b89  prompt/choose-list/initialize_plan.txt
415a79868778228b3142a4d18dd6914d7bfb5e76341f14ccd6a6f9b5aa339502  prompt/choose-list/rci_action.txt
e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  prompt/choose-list/update_action.txt
7cba3b3e27f3b142965243d4c5c6b24e9d9b9c13fbc2e2defb7f39de120d36c6  prompt/click-button/action.txt
7b752527d3dd251c070a2e642bacdb11d4de0443af8d77cbe7079e47b7e0c1e4  prompt/click-button/base.txt
5126ef17dc3724fcc978640645923b2f302af6cab99bd0dce9507edcf0297510  prompt/click-button/example.txt
cd0251da91ff737a287cfaf046eb7cfa8cda72211280629ce63d97719dce5a7b  prompt/click-button/first_action.txt
6b16076a70a655d15e37da22c882e560dda2755220248d13f4d6194c6c3f5b89  prompt/click-button/initialize_plan.txt
415a79868778228b3142a4d18dd6914d7bfb5e76341f14ccd6a6f9b5aa339502  prompt/click-button/rci_action.txt
ff2f6f5455f4a41b11610075b5f7982f8df5e916697ee500b97602066cfee403  prompt/click-button/update_action.txt
7cba3b3e27f3b142965243d4c5c6b24e9d9b9c13fbc2e2defb7f39de120d36c6  prompt/click-button-sequence/action.txt
435434ed209b37ab0d35a412fbf1ac904f74ffc271a46f5eb6c885087d6eefb9  prompt/click-button-sequence/base.txt
73a8edf9e31d3f356edebdbe79d0fe47c5ff31386655d0ae0b9b0333d0edd0b1  prompt/click-button-sequence/example.txt
cd0251da91ff737a287cfaf046eb7cfa8cda72211280629ce63d97719dce5a7b  prompt/click-button-sequence/first_action.txt
6b16076a70a655d15e37da22c882e560dda2755220248d13f4d6194c6c3f5b89  prompt/click-button-sequence/initialize_plan.txt
415a79868778228b3142a4d18dd6914d7bfb5e76341f14ccd6a6f9b5aa339502  prompt/click-button-sequence/rci_action.txt
71272adf8cbe7061f0779c51ab099a93dff7c5d0dbcdc7a3a1d8cc6e89ed6ebb  prompt/click-button-sequence/update_action.txt
7cba3b3e27f3b142965243d4c5c6b24e9d9b9c13fbc2e2defb7f39de120d36c6  prompt/click-checkboxes/action.txt
435434ed209b37ab0d35a412fbf1ac904f74ffc271a46f5eb6c885087d6eefb9  prompt/click-checkboxes/base.txt
b11d4d5dfa5ba866da5f10cdecd5b330c3f86b9ed5725a5c99f887af3fc4f1e8  prompt/click-checkboxes/example.txt
cd0251da91ff737a287cfaf046eb7cfa8cda72211280629ce63d97719dce5a7b  prompt/click-checkboxes/first_action.txt
6b16076a70a655d15e37da22c882e560dda2755220248d13f4d6194c6c3f5b89  prompt/click-checkboxes/initialize_plan.txt
415a79868778228b3142a4d18dd6914d7bfb5e76341f14ccd6a6f9b5aa339502  prompt/click-checkboxes/rci_action.txt
71272adf8cbe7061f0779c51ab099a93dff7c5d0dbcdc7a3a1d8cc6e89ed6ebb  prompt/click-checkboxes/update_action.txt
7cba3b3e27f3b142965243d4c5c6b24e9d9b9c13fbc2e2defb7f39de120d36c6  prompt/click-checkboxes-large/action.txt
435434ed209b37ab0d35a412fbf1ac904f74ffc271a46f5eb6c885087d6eefb9  prompt/click-checkboxes-large/base.txt
759ac596af6f23cb6f15b783641e1594e06f9463c10394a659da5693b0f86cb0  prompt/click-checkboxes-large/example.txt
cd0251da91ff737a287cfaf046eb7cfa8cda72211280629ce63d97719dce5a7b  prompt/click-checkboxes-large/first_action.txt
6b16076a70a655d15e37da22c882e560dda2755220248d13f4d6194c6c3f5b89  prompt/click-checkboxes-large/initialize_plan.txt
415a79868778228b3142a4d18dd6914d7bfb5e76341f14ccd6a6f9b5aa339502  prompt/click-checkboxes-large/rci_action.txt
71272adf8cbe7061f0779c51ab099a93dff7c5d0dbcdc7a3a1d8cc6e89ed6ebb  prompt/click-checkboxes-large/update_action.txt
7cba3b3e27f3b142965243d4c5c6b24e9d9b9c13fbc2e2defb7f39de120d36c6  prompt/click-checkboxes-soft/action.txt
435434ed209b37ab0d35a412fbf1ac904f74ffc271a46f5eb6c885087d6eefb9  prompt/click-checkboxes-soft/base.txt
99a5aa4fc2c2a643509096c5775b92ced9b00d2d6a3601f7358d8aa2f85cfa7b  prompt/click-checkboxes-soft/example.txt
cd0251da91ff737a287cfaf046eb7cfa8cda72211280629ce63d97719dce5a7b  prompt/click-checkboxes-soft/first_action.txt
6b16076a70a655d15e37da22c882e560dda2755220248d13f4d6194c6c3f5b89  prompt/click-checkboxes-soft/initialize_plan.txt
415a79868778228b3142a4d18dd6914d7bfb5e76341f14ccd6a6f9b5aa339502  prompt/click-checkboxes-soft/rci_action.txt
237976f746f7d3372f0420d40047379b8c4475d90bd62582508f925bdf8a474b  prompt/click-checkboxes-soft/update_action.txt
7cba3b3e27f3b142965243d4c5c6b24e9d9b9c13fbc2e2defb7f39de120d36c6  prompt/click-checkboxes-transfer/action.txt
435434ed209b37ab0d35a412fbf1ac904f74ffc271a46f5eb6c885087d6eefb9  prompt/click-checkboxes-transfer/base.txt
26bd05cdfc65695c6e908a0ff1eac34da9fb9aefc1ca9f1b05f83e9e4a05ae9d  prompt/click-checkboxes-transfer/example.txt
cd0251da91ff737a287cfaf046eb7cfa8cda72211280629ce63d97719dce5a7b  prompt/click-checkboxes-transfer/first_action.txt
6b16076a70a655d15e37da22c882e560dda2755220248d13f4d6194c6c3f5b89  prompt/click-checkboxes-transfer/initialize_plan.txt
415a79868778228b3142a4d18dd6914d7bfb5e76341f14ccd6a6f9b5aa339502  prompt/click-checkboxes-transfer/rci_action.txt
71272adf8cbe7061f0779c51ab099a93dff7c5d0dbcdc7a3a1d8cc6e89ed6ebb  prompt/click-checkboxes-transfer/update_action.txt
7cba3b3e27f3b142965243d4c5c6b24e9d9b9c13fbc2e2defb7f39de120d36c6  prompt/click-collapsible/action.txt
435434ed209b37ab0d35a412fbf1ac904f74ffc271a46f5eb6c885087d6eefb9  prompt/click-collapsible/base.txt
0fe363fa73d807f986244204dec9f408bddf4357e8d8b3bdbe65e7924d726f81  prompt/click-collapsible/example.txt
cd0251da91ff737a287cfaf046eb7cfa8cda72211280629ce63d97719dce5a7b  prompt/click-collapsible/first_action.txt
6b16076a70a655d15e37da22c882e560dda2755220248d13f4d6194c6c3f5b89  prompt/click-collapsible/initialize_plan.txt
415a79868778228b3142a4d18dd6914d7bfb5e76341f14ccd6a6f9b5aa339502  prompt/click-collapsible/rci_action.txt
71272adf8cbe7061f0779c51ab099a93dff7c5d0dbcdc7a3a1d8cc6e89ed6ebb  prompt/click-collapsible/update_action.txt
7cba3b3e27f3b142965243d4c5c6b24e9d9b9c13fbc2e2defb7f39de120d36c6  prompt/click-collapsible-2/action.txt
dad80d8ce309c9f2e8bbd395426665b22932f2bc4fd42cbbb6dbdf4b9ae6f7ac  prompt/click-collapsible-2/base.txt
0c163b85501c001b88ade369ef8d021bd81fd616aedd78f2775485cba1dc818c  prompt/click-collapsible-2/example.txt
cd0251da91ff737a287cfaf046eb7cfa8cda72211280629ce63d97719dce5a7b  prompt/click-collapsible-2/first_action.txt
6b16076a70a655d15e37da22c882e560dda2755220248d13f4d6194c6c3f5b89  prompt/click-collapsible-2/initialize_plan.txt
415a79868778228b3142a4d18dd6914d7bfb5e76341f14ccd6a6f9b5aa339502  prompt/click-collapsible-2/rci_action.txt
237976f746f7d3372f0420d40047379b8c4475d90bd62582508f925bdf8a474b  prompt/click-collapsible-2/update_action.txt
7cba3b3e27f3b142965243d4c5c6b24e9d9b9c13fbc2e2defb7f39de120d36c6  prompt/click-dialog/action.txt
dad80d8ce309c9f2e8bbd395426665b22932f2bc4fd42cbbb6dbdf4b9ae6f7ac  prompt/click-dialog/base.txt
ad74f12c9a89096a0cdba5ac60a5ec1ce74dd7fbd60d9d96e2985ef11429f416  prompt/click-dialog/example.txt
cd0251da91ff737a287cfaf046eb7cfa8cda72211280629ce63d97719dce5a7b  prompt/click-dialog/first_action.txt
6b16076a70a655d15e37da22c882e560dda2755220248d13f4d6194c6c3f5b89  prompt/click-dialog/initialize_plan.txt
415a79868778228b3142a4d18dd6914d7bfb5e76341f14ccd6a6f9b5aa339502  prompt/click-dialog/rci_action.txt
e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  prompt/click-dialog/update_action.txt
7cba3b3e27f3b142965243d4c5c6b24e9d9b9c13fbc2e2defb7f39de120d36c6  prompt/click-dialog-2/action.txt
dad80d8ce309c9f2e8bbd395426665b22932f2bc4fd42cbbb6dbdf4b9ae6f7ac  prompt/click-dialog-2/base.txt
a3fb7c270c7f4ae3b79eb0b66643bac0e4263c0b3acc97a83a01d2848e9cefd8  prompt/click-dialog-2/example.txt
cd0251da91ff737a287cfaf046eb7cfa8cda72211280629ce63d97719dce5a7b  prompt/click-dialog-2/first_action.txt
6b16076a70a655d15e37da22c882e560dda2755220248d13f4d6194c6c3f5b89  prompt/click-dialog-2/initialize_plan.txt
415a79868778228b3142a4d18dd6914d7bfb5e76341f14ccd6a6f9b5aa339502  prompt/click-dialog-2/rci_action.txt
e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  prompt/click-dialog-2/update_action.txt
7cba3b3e27f3b142965243d4c5c6b24e9d9b9c13fbc2e2defb7f39de120d36c6  prompt/click-menu/action.txt
e255b8711ade8d06838f8823ddf596636548c204bd3cf8a8d3fe95c5efc49d4d  prompt/click-menu/base.txt
444d52adbd95efabd065921ebedc44f75e7613d1d41140a25e12d4c82d136354  prompt/click-menu/example.txt
cd0251da91ff737a287cfaf046eb7cfa8cda72211280629ce63d97719dce5a7b  prompt/click-menu/first_action.txt
6b16076a70a655d15e37da22c882e560dda2755220248d13f4d6194c6c3f5b89  prompt/click-menu/initialize_plan.txt
415a79868778228b3142a4d18dd6914d7bfb5e76341f14ccd6a6f9b5aa339502  prompt/click-menu/rci_action.txt
e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  prompt/click-menu/update_action.txt
7cba3b3e27f3b142965243d4c5c6b24e9d9b9c13fbc2e2defb7f39de120d36c6  prompt/click-option/action.txt
7b752527d3dd251c070a2e642bacdb11d4de0443af8d77cbe7079e47b7e0c1e4  prompt/click-option/base.txt
e3b778263ce533c4cc5d4ea9d4e8a3346a2f2eb5d6f7018c00af873c465e2acc  prompt/click-option/example.txt
cd0251da91ff737a287cfaf046eb7cfa8cda72211280629ce63d97719dce5a7b  prompt/click-option/first_action.txt
6b16076a70a655d15e37da22c882e560dda2755220248d13f4d6194c6c3f5b89  prompt/click-option/initialize_plan.txt
415a79868778228b3142a4d18dd6914d7bfb5e76341f14ccd6a6f9b5aa339502  prompt/click-option/rci_action.txt
ff2f6f5455f4a41b11610075b5f7982f8df5e916697ee500b97602066cfee403  prompt/click-option/update_action.txt
7cba3b3e27f3b142965243d4c5c6b24e9d9b9c13fbc2e2defb7f39de120d36c6  prompt/click-scroll-list/action.txt
5ad9fd54cf4df1c2a197f689f8784b0f492b7671476361ad08c5f1473ee1b90b  prompt/click-scroll-list/base.txt
f5b12054d4c4ef0cac2b4e876a1dc297b27ff7c5aa19f8504cdd86d71bcb4815  prompt/click-scroll-list/example.txt
cd0251da91ff737a287cfaf046eb7cfa8cda72211280629ce63d97719dce5a7b  prompt/click-scroll-list/first_action.txt
6b16076a70a655d15e37da22c882e560dda2755220248d13f4d6194c6c3f5b89  prompt/click-scroll-list/initialize_plan.txt
415a79868778228b3142a4d18dd6914d7bfb5e76341f14ccd6a6f9b5aa339502  prompt/click-scroll-list/rci_action.txt
ff2f6f5455f4a41b11610075b5f7982f8df5e916697ee500b97602066cfee403  prompt/click-scroll-list/update_action.txt
7cba3b3e27f3b142965243d4c5c6b24e9d9b9c13fbc2e2defb7f39de120d36c6  prompt/click-shades/action.txt
dad80d8ce309c9f2e8bbd395426665b22932f2bc4fd42cbbb6dbdf4b9ae6f7ac  prompt/click-shades/base.txt
18fdf2672dc5476da1851d2d2523bd09098966314d3803458f2874390f112085  prompt/click-shades/example.txt
cd0251da91ff737a287cfaf046eb7cfa8cda72211280629ce63d97719dce5a7b  prompt/click-shades/first_action.txt
6b16076a70a655d15e37da22c882e560dda2755220248d13f4d6194c6c3f5b89  prompt/click-shades/initialize_plan.txt
415a79868778228b3142a4d18dd6914d7bfb5e76341f14ccd6a6f9b5aa339502  prompt/click-shades/rci_action.txt
ff2f6f5455f4a41b11610075b5f7982f8df5e916697ee500b97602066cfee403  prompt/click-shades/update_action.txt
7cba3b3e27f3b142965243d4c5c6b24e9d9b9c13fbc2e2defb7f39de120d36c6  prompt/click-shape/action.txt
942a9eb87f52f116cb012d3ac33ae550bd2bf06090537879f981b9ae1098dd8b  prompt/click-shape/base.txt
ec61a1b3d8d121f0ab18716000694a22c606e7e17d175836e9aa43849f0684e7  prompt/click-shape/example.txt
cd0251da91ff737a287cfaf046eb7cfa8cda72211280629ce63d97719dce5a7b  prompt/click-shape/first_action.txt
6b16076a70a655d15e37da22c882e560dda2755220248d13f4d6194c6c3f5b89  prompt/click-shape/initialize_plan.txt
415a79868778228b3142a4d18dd6914d7bfb5e76341f14ccd6a6f9b5aa339502  prompt/click-shape/rci_action.txt
237976f746f7d3372f0420d40047379b8c4475d90bd62582508f925bdf8a474b  prompt/click-shape/update_action.txt
7cba3b3e27f3b142965243d4c5c6b24e9d9b9c13fbc2e2defb7f39de120d36c6  prompt/click-tab/action.txt
dad80d8ce309c9f2e8bbd395426665b22932f2bc4fd42cbbb6dbdf4b9ae6f7ac  prompt/click-tab/base.txt
ecdb56fcd6019bf26d818a61bafbc4d678a42ab6177affdbdd749b05d93a75e9  prompt/click-tab/example.txt
cd0251da91ff737a287cfaf046eb7cfa8cda72211280629ce63d97719dce5a7b  prompt/click-tab/first_action.txt
6b16076a70a655d15e37da22c882e560dda2755220248d13f4d6194c6c3f5b89  prompt/click-tab/initialize_plan.txt
415a79868778228b3142a4d18dd6914d7bfb5e76341f14ccd6a6f9b5aa339502  prompt/click-tab/rci_action.txt
e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  prompt/click-tab/update_action.txt
7cba3b3e27f3b142965243d4c5c6b24e9d9b9c13fbc2e2defb7f39de120d36c6  prompt/click-tab-2/action.txt
dad80d8ce309c9f2e8bbd395426665b22932f2bc4fd42cbbb6dbdf4b9ae6f7ac  prompt/click-tab-2/base.txt
008763c9a7e224a0f93a62fb1085d83b35b53338dce9b1c30f719657ffb4a15e  prompt/click-tab-2/example.txt
cd0251da91ff737a287cfaf046eb7cfa8cda72211280629ce63d97719dce5a7b  prompt/click-tab-2/first_action.txt
6b16076a70a655d15e37da22c882e560dda2755220248d13f4d6194c6c3f5b89  prompt/click-tab-2/initialize_plan.txt
415a79868778228b3142a4d18dd6914d7bfb5e76341f14ccd6a6f9b5aa339502  prompt/click-tab-2/rci_action.txt
237976f746f7d3372f0420d40047379b8c4475d90bd62582508f925bdf8a474b  prompt/click-tab-2/update_action.txt
7cba3b3e27f3b142965243d4c5c6b24e9d9b9c13fbc2e2defb7f39de120d36c6  prompt/click-tab-2-hard/action.txt
dad80d8ce309c9f2e8bbd395426665b22932f2bc4fd42cbbb6dbdf4b9ae6f7ac  prompt/click-tab-2-hard/base.txt
57472a1057e4b1b344d47a7b8944dc4c441633f40c67ffc8a65c6410e94d8a75  prompt/click-tab-2-hard/example.txt
cd0251da91ff737a287cfaf046eb7cfa8cda72211280629ce63d97719dce5a7b  prompt/click-tab-2-hard/first_action.txt
6b16076a70a655d15e37da22c882e560dda2755220248d13f4d6194c6c3f5b89  prompt/click-tab-2-hard/initialize_plan.txt
291c6cfa05cb02c16e18800ffbb21ef0d7b719c8e9e41d784e8ea12fa19b4760  prompt/click-tab-2-hard/rci_action.txt
237976f746f7d3372f0420d40047379b8c4475d90bd62582508f925bdf8a474b  prompt/click-tab-2-hard/update_action.txt
7cba3b3e27f3b142965243d4c5c6b24e9d9b9c13fbc2e2defb7f39de120d36c6  prompt/click-test/action.txt
dad80d8ce309c9f2e8bbd395426665b22932f2bc4fd42cbbb6dbdf4b9ae6f7ac  prompt/click-test/base.txt
db285b47f8fd4bea932b23c6b44b45b85307a6a74c8a36332dde506af5e7d0c8  prompt/click-test/example.txt
cd0251da91ff737a287cfaf046eb7cfa8cda72211280629ce63d97719dce5a7b  prompt/click-test/first_action.txt
6b16076a70a655d15e37da22c882e560dda2755220248d13f4d6194c6c3f5b89  prompt/click-test/initialize_plan.txt
415a79868778228b3142a4d18dd6914d7bfb5e76341f14ccd6a6f9b5aa339502  prompt/click-test/rci_action.txt
b8bb9991130339550cf08c9e1f75dc57e2a3428ac4527706e88621346604dbae  prompt/click-test/update_action.txt
7cba3b3e27f3b142965243d4c5c6b24e9d9b9c13fbc2e2defb7f39de120d36c6  prompt/click-widget/action.txt
dad80d8ce309c9f2e8bbd395426665b22932f2bc4fd42cbbb6dbdf4b9ae6f7ac  prompt/click-widget/base.txt
1ab65495cb6e95317f962ff8e84171052ae568eff9ba69820afb4aeb5ca8d92c  prompt/click-widget/example.txt
cd0251da91ff737a287cfaf046eb7cfa8cda72211280629ce63d97719dce5a7b  prompt/click-widget/first_action.txt
6b16076a70a655d15e37da22c882e560dda2755220248d13f4d6194c6c3f5b89  prompt/click-widget/initialize_plan.txt
415a79868778228b3142a4d18dd6914d7bfb5e76341f14ccd6a6f9b5aa339502  prompt/click-widget/rci_action.txt
237976f746f7d3372f0420d40047379b8c4475d90bd62582508f925bdf8a474b  prompt/click-widget/update_action.txt
7cba3b3e27f3b142965243d4c5c6b24e9d9b9c13fbc2e2defb7f39de120d36c6  prompt/count-shape/action.txt
435434ed209b37ab0d35a412fbf1ac904f74ffc271a46f5eb6c885087d6eefb9  prompt/count-shape/base.txt
d4e4b3437dbfb4287ea4715025d429c0243837e40918619cc7150cf064cec4dc  prompt/count-shape/example.txt
cd0251da91ff737a287cfaf046eb7cfa8cda72211280629ce63d97719dce5a7b  prompt/count-shape/first_action.txt
6b16076a70a655d15e37da22c882e560dda2755220248d13f4d6194c6c3f5b89  prompt/count-shape/initialize_plan.txt
415a79868778228b3142a4d18dd6914d7bfb5e76341f14ccd6a6f9b5aa339502  prompt/count-shape/rci_action.txt
237976f746f7d3372f0420d40047379b8c4475d90bd62582508f925bdf8a474b  prompt/count-shape/update_action.txt
7cba3b3e27f3b142965243d4c5c6b24e9d9b9c13fbc2e2defb7f39de120d36c6  prompt/email-inbox/action.txt
dad80d8ce309c9f2e8bbd395426665b22932f2bc4fd42cbbb6dbdf4b9ae6f7ac  prompt/email-inbox/base.txt
af7be52794aaf322e17d26f6aa973635cef1b269240ac7a9a46f49276f89705a  prompt/email-inbox/example.txt
cd0251da91ff737a287cfaf046eb7cfa8cda72211280629ce63d97719dce5a7b  prompt/email-inbox/first_action.txt
6b16076a70a655d15e37da22c882e560dda2755220248d13f4d6194c6c3f5b89  prompt/email-inbox/initialize_plan.txt
415a79868778228b3142a4d18dd6914d7bfb5e76341f14ccd6a6f9b5aa339502  prompt/email-inbox/rci_action.txt
e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  prompt/email-inbox/update_action.txt
bcc5f112e2136e806f4f8e0e88f852fde6144d982774f31aaaefa63d1afb5305  prompt/email-inbox-forward-nl/action.txt
dad80d8ce309c9f2e8bbd395426665b22932f2bc4fd42cbbb6dbdf4b9ae6f7ac  prompt/email-inbox-forward-nl/base.txt
a7fc5cb99093dfbcf4c7e0fc34ba21f2c6ac99a1ab904d9928a399bf8e92e301  prompt/email-inbox-forward-nl/example.txt
cd0251da91ff737a287cfaf046eb7cfa8cda72211280629ce63d97719dce5a7b  prompt/email-inbox-forward-nl/first_action.txt
6b16076a70a655d15e37da22c882e560dda2755220248d13f4d6194c6c3f5b89  prompt/email-inbox-forward-nl/initialize_plan.txt
415a79868778228b3142a4d18dd6914d7bfb5e76341f14ccd6a6f9b5aa339502  prompt/email-inbox-forward-nl/rci_action.txt
e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  prompt/email-inbox-forward-nl/update_action.txt
7cba3b3e27f3b142965243d4c5c6b24e9d9b9c13fbc2e2defb7f39de120d36c6  prompt/email-inbox-forward-nl-turk/action.txt
dad80d8ce309c9f2e8bbd395426665b22932f2bc4fd42cbbb6dbdf4b9ae6f7ac  prompt/email-inbox-forward-nl-turk/base.txt
a7fc5cb99093dfbcf4c7e0fc34ba21f2c6ac99a1ab904d9928a399bf8e92e301  prompt/email-inbox-forward-nl-turk/example.txt
cd0251da91ff737a287cfaf046eb7cfa8cda72211280629ce63d97719dce5a7b  prompt/email-inbox-forward-nl-turk/first_action.txt
6b16076a70a655d15e37da22c882e560dda2755220248d13f4d6194c6c3f5b89  prompt/email-inbox-forward-nl-turk/initialize_plan.txt
415a79868778228b3142a4d18dd6914d7bfb5e76341f14ccd6a6f9b5aa339502  prompt/email-inbox-forward-nl-turk/rci_action.txt
e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  prompt/email-inbox-forward-nl-turk/update_action.txt
7cba3b3e27f3b142965243d4c5c6b24e9d9b9c13fbc2e2defb7f39de120d36c6  prompt/email-inbox-nl-turk/action.txt
dad80d8ce309c9f2e8bbd395426665b22932f2bc4fd42cbbb6dbdf4b9ae6f7ac  prompt/email-inbox-nl-turk/base.txt
34c63a82f9d60dcf61206c62469ac2ebd9755accaea814f53cb75817cf75eeb5  prompt/email-inbox-nl-turk/example.txt
cd0251da91ff737a287cfaf046eb7cfa8cda72211280629ce63d97719dce5a7b  prompt/email-inbox-nl-turk/first_action.txt
6b16076a70a655d15e37da22c882e560dda2755220248d13f4d6194c6c3f5b89  prompt/email-inbox-nl-turk/initialize_plan.txt
415a79868778228b3142a4d18dd6914d7bfb5e76341f14ccd6a6f9b5aa339502  prompt/email-inbox-nl-turk/rci_action.txt
e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  prompt/email-inbox-nl-turk/update_action.txt
642fabd5ed848658b45963e51afc446ef28effc9c972e4ab706915b562074448  prompt/enter-date/action.txt
81afdc1535dfe4712c435092ad9ba569eba60bbc9f905388fc38b600dff33d05  prompt/enter-date/base.txt
f1e7ecb07e3f345e9def8ba52901ed49d617e24ee0c221dc2714b0fc9f21c9b8  prompt/enter-date/example.txt
cd0251da91ff737a287cfaf046eb7cfa8cda72211280629ce63d97719dce5a7b  prompt/enter-date/first_action.txt
3255f82899e876db987daf496533c73b679abb169ad83fc1649a3325ae0bc9fa  prompt/enter-date/initialize_plan.txt
415a79868778228b3142a4d18dd6914d7bfb5e76341f14ccd6a6f9b5aa339502  prompt/enter-date/rci_action.txt
237976f746f7d3372f0420d40047379b8c4475d90bd62582508f925bdf8a474b  prompt/enter-date/update_action.txt
7cba3b3e27f3b142965243d4c5c6b24e9d9b9c13fbc2e2defb7f39de120d36c6  prompt/enter-time/action.txt
dad80d8ce309c9f2e8bbd395426665b22932f2bc4fd42cbbb6dbdf4b9ae6f7ac  prompt/enter-time/base.txt
4ea801e3fa4d56dfb593c0ec8b44c6030e00cd620cf331a60096828275d1bec4  prompt/enter-time/example.txt
cd0251da91ff737a287cfaf046eb7cfa8cda72211280629ce63d97719dce5a7b  prompt/enter-time/first_action.txt
6b16076a70a655d15e37da22c882e560dda2755220248d13f4d6194c6c3f5b89  prompt/enter-time/initialize_plan.txt
415a79868778228b3142a4d18dd6914d7bfb5e76341f14ccd6a6f9b5aa339502  prompt/enter-time/rci_action.txt
e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  prompt/enter-time/update_action.txt
e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  prompt/example.txt
a296d0c714012f71447f3e9d9355603feb4f164d446e64e97e4bf5e0b294aabd  prompt/few-shot.json
cd0251da91ff737a287cfaf046eb7cfa8cda72211280629ce63d97719dce5a7b  prompt/first_action.txt
7cba3b3e27f3b142965243d4c5c6b24e9d9b9c13fbc2e2defb7f39de120d36c6  prompt/focus-text/action.txt
a86fb4fed11aec2afde4699a0888247bd4fbc1beb3b4447d08022d1ea44be312  prompt/focus-text/base.txt
6b4e44c2c44befe539c8d74cc918f14ffe49b9c127e4327f612093338f24a312  prompt/focus-text/example.txt
cd0251da91ff737a287cfaf046eb7cfa8cda72211280629ce63d97719dce5a7b  prompt/focus-text/first_action.txt
6b16076a70a655d15e37da22c882e560dda2755220248d13f4d6194c6c3f5b89  prompt/focus-text/initialize_plan.txt
415a79868778228b3142a4d18dd6914d7bfb5e76341f14ccd6a6f9b5aa339502  prompt/focus-text/rci_action.txt
e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  prompt/focus-text/update_action.txt
7cba3b3e27f3b142965243d4c5c6b24e9d9b9c13fbc2e2defb7f39de120d36c6  prompt/grid-coordinate/action.txt
a86fb4fed11aec2afde4699a0888247bd4fbc1beb3b4447d08022d1ea44be312  prompt/grid-coordinate/base.txt
39bb7107c9f8ffd34282561c0563e5258b03a70ca3fb9cbfb659298268dea512  prompt/grid-coordinate/check_finish.txt
4b07253564e6fc9abb74eb5b7b9b954ec6ded45b97c9b4f3fa692ee5d22c47c8  prompt/grid-coordinate/done.txt
5537ece585466aedab498cd23071581f881e4fb565f874209219c9e7f034c1f7  prompt/grid-coordinate/edit_plan.txt
fe924d549847c807a5e57392c35ea65c3d71fc2dc2f9a8143597b2bf63b8aa1f  prompt/grid-coordinate/example.txt
cd0251da91ff737a287cfaf046eb7cfa8cda72211280629ce63d97719dce5a7b  prompt/grid-coordinate/first_action.txt
6b16076a70a655d15e37da22c882e560dda2755220248d13f4d6194c6c3f5b89  prompt/grid-coordinate/initialize_plan.txt
584bda166c871feaae59895be94c9364eb148beadda6d363c0c4c90b46005b3d  prompt/grid-coordinate/new_plan.txt
415a79868778228b3142a4d18dd6914d7bfb5e76341f14ccd6a6f9b5aa339502  prompt/grid-coordinate/rci_action.txt
2a2fdc9f39610c77d50a323b08eee04f89b772682c7a1156cf578764c8c8625a  prompt/grid-coordinate/rci_answer.txt
e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  prompt/grid-coordinate/update_action.txt
7cba3b3e27f3b142965243d4c5c6b24e9d9b9c13fbc2e2defb7f39de120d36c6  prompt/identify-shape/action.txt
dad80d8ce309c9f2e8bbd395426665b22932f2bc4fd42cbbb6dbdf4b9ae6f7ac  prompt/identify-shape/base.txt
c836fd4488d1bc52a44bd5f5484481b243176ed7926a0226dc4dcc3df0f64ed8  prompt/identify-shape/example.txt
cd0251da91ff737a287cfaf046eb7cfa8cda72211280629ce63d97719dce5a7b  prompt/identify-shape/first_action.txt
6b16076a70a655d15e37da22c882e560dda2755220248d13f4d6194c6c3f5b89  prompt/identify-shape/initialize_plan.txt
291c6cfa05cb02c16e18800ffbb21ef0d7b719c8e9e41d784e8ea12fa19b4760  prompt/identify-shape/rci_action.txt
e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  prompt/identify-shape/update_action.txt
6b16076a70a655d15e37da22c882e560dda2755220248d13f4d6194c6c3f5b89  prompt/initialize_plan.txt
7cba3b3e27f3b142965243d4c5c6b24e9d9b9c13fbc2e2defb7f39de120d36c6  prompt/login-user-popup/action.txt
dad80d8ce309c9f2e8bbd395426665b22932f2bc4fd42cbbb6dbdf4b9ae6f7ac  prompt/login-user-popup/base.txt
c9c982f6716f5a6f64c5335fc06c8206ab680936d96cd09a3cd2076a5bd7bd2f  prompt/login-user-popup/example.txt
cd0251da91ff737a287cfaf046eb7cfa8cda72211280629ce63d97719dce5a7b  prompt/login-user-popup/first_action.txt
6b16076a70a655d15e37da22c882e560dda2755220248d13f4d6194c6c3f5b89  prompt/login-user-popup/initialize_plan.txt
6ab40a35ae3fda4edfe7b1e653a733f7a8fc1e0dab391ed877131035066a4626  prompt/login-user-popup/rci_action.txt
e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  prompt/login-user-popup/update_action.txt
7cba3b3e27f3b142965243d4c5c6b24e9d9b9c13fbc2e2defb7f39de120d36c6  prompt/multi-layouts/action.txt
dad80d8ce309c9f2e8bbd395426665b22932f2bc4fd42cbbb6dbdf4b9ae6f7ac  prompt/multi-layouts/base.txt
9a0b32cf370a3b9bf2294e5c96a34446522b1bddf2436d60bb2c9077ac26424b  prompt/multi-layouts/example.txt
cd0251da91ff737a287cfaf046eb7cfa8cda72211280629ce63d97719dce5a7b  prompt/multi-layouts/first_action.txt
6b16076a70a655d15e37da22c882e560dda2755220248d13f4d6194c6c3f5b89  prompt/multi-layouts/initialize_plan.txt
291c6cfa05cb02c16e18800ffbb21ef0d7b719c8e9e41d784e8ea12fa19b4760  prompt/multi-layouts/rci_action.txt
e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  prompt/multi-layouts/update_action.txt
7cba3b3e27f3b142965243d4c5c6b24e9d9b9c13fbc2e2defb7f39de120d36c6  prompt/navigate-tree/action.txt
dad80d8ce309c9f2e8bbd395426665b22932f2bc4fd42cbbb6dbdf4b9ae6f7ac  prompt/navigate-tree/base.txt
4822d8c68d3c1aee0138fb450541e4e677db3e1e786a5d4b47a15936dfd2768b  prompt/navigate-tree/example.txt
cd0251da91ff737a287cfaf046eb7cfa8cda72211280629ce63d97719dce5a7b  prompt/navigate-tree/first_action.txt
6b16076a70a655d15e37da22c882e560dda2755220248d13f4d6194c6c3f5b89  prompt/navigate-tree/initialize_plan.txt
291c6cfa05cb02c16e18800ffbb21ef0d7b719c8e9e41d784e8ea12fa19b4760  prompt/navigate-tree/rci_action.txt
e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  prompt/navigate-tree/update_action.txt
291c6cfa05cb02c16e18800ffbb21ef0d7b719c8e9e41d784e8ea12fa19b4760  prompt/rci_action.txt
bcc5f112e2136e806f4f8e0e88f852fde6144d982774f31aaaefa63d1afb5305  prompt/search-engine/action.txt
001033b82c42055e99e31e5c0563245eb66b0ee83f5d12a3e15cab356bfb41fd  prompt/search-engine/base.txt
fdf5a78d957d6274cde2e71a01cfe2255c62f080ca93fc695b2e11a2ea0f989d  prompt/search-engine/example.txt
cd0251da91ff737a287cfaf046eb7cfa8cda72211280629ce63d97719dce5a7b  prompt/search-engine/first_action.txt
6b16076a70a655d15e37da22c882e560dda2755220248d13f4d6194c6c3f5b89  prompt/search-engine/initialize_plan.txt
291c6cfa05cb02c16e18800ffbb21ef0d7b719c8e9e41d784e8ea12fa19b4760  prompt/search-engine/rci_action.txt
04da0ad69228cfa80a3dceb19061203ba94a052aacb035ecbede52cbf7093b2d  prompt/search-engine/update_action.txt
bcc5f112e2136e806f4f8e0e88f852fde6144d982774f31aaaefa63d1afb5305  prompt/simple-algebra/action.txt
aeb5543b3183a370ba5171bc2b099c3573c6e13ee879f1b4b362d7f1c817aaf4  prompt/simple-algebra/base.txt
39bb7107c9f8ffd34282561c0563e5258b03a70ca3fb9cbfb659298268dea512  prompt/simple-algebra/check_finish.txt
4b07253564e6fc9abb74eb5b7b9b954ec6ded45b97c9b4f3fa692ee5d22c47c8  prompt/simple-algebra/done.txt
5537ece585466aedab498cd23071581f881e4fb565f874209219c9e7f034c1f7  prompt/simple-algebra/edit_plan.txt
db23401e9b14d0fc3aa5fd4749a6bf286093136cc7610d5749ab472ac2bbf5fc  prompt/simple-algebra/example.txt
cd0251da91ff737a287cfaf046eb7cfa8cda72211280629ce63d97719dce5a7b  prompt/simple-algebra/first_action.txt
6b16076a70a655d15e37da22c882e560dda2755220248d13f4d6194c6c3f5b89  prompt/simple-algebra/initialize_plan.txt
584bda166c871feaae59895be94c9364eb148beadda6d363c0c4c90b46005b3d  prompt/simple-algebra/new_plan.txt
8f06dc925cdf348c7b5d367ec7c447d1f0c84439f6dc701c0b99d811617053c8  prompt/simple-algebra/rci_action.txt
2a2fdc9f39610c77d50a323b08eee04f89b772682c7a1156cf578764c8c8625a  prompt/simple-algebra/rci_answer.txt
e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  prompt/simple-algebra/update_action.txt
7cba3b3e27f3b142965243d4c5c6b24e9d9b9c13fbc2e2defb7f39de120d36c6  prompt/social-media/action.txt
001033b82c42055e99e31e5c0563245eb66b0ee83f5d12a3e15cab356bfb41fd  prompt/social-media/base.txt
cbb6a55c3be1acd01f82d47802e03af21fa75dfb5c46dbb6bfd3c49ce2e81bcb  prompt/social-media/example.txt
cd0251da91ff737a287cfaf046eb7cfa8cda72211280629ce63d97719dce5a7b  prompt/social-media/first_action.txt
6b16076a70a655d15e37da22c882e560dda2755220248d13f4d6194c6c3f5b89  prompt/social-media/initialize_plan.txt
415a79868778228b3142a4d18dd6914d7bfb5e76341f14ccd6a6f9b5aa339502  prompt/social-media/rci_action.txt
b8bb9991130339550cf08c9e1f75dc57e2a3428ac4527706e88621346604dbae  prompt/social-media/update_action.txt
6d31265d0d33ee80532333638e747b0f2c706580f4df40b821e1473f1b7aab6a  prompt/social-media-all/action.txt
001033b82c42055e99e31e5c0563245eb66b0ee83f5d12a3e15cab356bfb41fd  prompt/social-media-all/base.txt
cf253ffca34bae4752a73b4ea91ee1e0cff8959b5dd61a42d3d80ab130ad9054  prompt/social-media-all/example.txt
cd0251da91ff737a287cfaf046eb7cfa8cda72211280629ce63d97719dce5a7b  prompt/social-media-all/first_action.txt
6b16076a70a655d15e37da22c882e560dda2755220248d13f4d6194c6c3f5b89  prompt/social-media-all/initialize_plan.txt
415a79868778228b3142a4d18dd6914d7bfb5e76341f14ccd6a6f9b5aa339502  prompt/social-media-all/rci_action.txt
3ea5658d05e52009dd2c9711e401be0870046f538e81e1854b4293bdb55ca4ba  prompt/social-media-all/update_action.txt
7cba3b3e27f3b142965243d4c5c6b24e9d9b9c13fbc2e2defb7f39de120d36c6  prompt/social-media-some/action.txt
001033b82c42055e99e31e5c0563245eb66b0ee83f5d12a3e15cab356bfb41fd  prompt/social-media-some/base.txt
e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  prompt/social-media-some/example.txt
cd0251da91ff737a287cfaf046eb7cfa8cda72211280629ce63d97719dce5a7b  prompt/social-media-some/first_action.txt
6b16076a70a655d15e37da22c882e560dda2755220248d13f4d6194c6c3f5b89  prompt/social-media-some/initialize_plan.txt
291c6cfa05cb02c16e18800ffbb21ef0d7b719c8e9e41d784e8ea12fa19b4760  prompt/social-media-some/rci_action.txt
e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  prompt/social-media-some/update_action.txt
412155172d26e08f5a755c80d79985f9e19c4e1d13c2a96ee57c34132c3d17b9  prompt/terminal/action.txt
a5ea9bdb5bdbe1f9f6ff04f79bea1f5cfb06b3bbfbc16ef06d5ee83f1a67f352  prompt/terminal/base.txt
391236283ca5c3e7a3735034f02cf25841ae6f3cd43b2d0931be713fae9657cc  prompt/terminal/example.txt
cd0251da91ff737a287cfaf046eb7cfa8cda72211280629ce63d97719dce5a7b  prompt/terminal/first_action.txt
6b16076a70a655d15e37da22c882e560dda2755220248d13f4d6194c6c3f5b89  prompt/terminal/initialize_plan.txt
291c6cfa05cb02c16e18800ffbb21ef0d7b719c8e9e41d784e8ea12fa19b4760  prompt/terminal/rci_action.txt
237976f746f7d3372f0420d40047379b8c4475d90bd62582508f925bdf8a474b  prompt/terminal/update_action.txt
7cba3b3e27f3b142965243d4c5c6b24e9d9b9c13fbc2e2defb7f39de120d36c6  prompt/tic-tac-toe/action.txt
001033b82c42055e99e31e5c0563245eb66b0ee83f5d12a3e15cab356bfb41fd  prompt/tic-tac-toe/base.txt
96e98535c2fa8e83658a8651fd575997372e019d6cf00d3aac26f43a05a1a5c4  prompt/tic-tac-toe/example.txt
cd0251da91ff737a287cfaf046eb7cfa8cda72211280629ce63d97719dce5a7b  prompt/tic-tac-toe/first_action.txt
6b16076a70a655d15e37da22c882e560dda2755220248d13f4d6194c6c3f5b89  prompt/tic-tac-toe/initialize_plan.txt
291c6cfa05cb02c16e18800ffbb21ef0d7b719c8e9e41d784e8ea12fa19b4760  prompt/tic-tac-toe/rci_action.txt
e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  prompt/tic-tac-toe/update_action.txt
3ea5658d05e52009dd2c9711e401be0870046f538e81e1854b4293bdb55ca4ba  prompt/update_action.txt
7cba3b3e27f3b142965243d4c5c6b24e9d9b9c13fbc2e2defb7f39de120d36c6  prompt/use-autocomplete/action.txt
001033b82c42055e99e31e5c0563245eb66b0ee83f5d12a3e15cab356bfb41fd  prompt/use-autocomplete/base.txt
982408e59f9c2e7a64feddac5498e7e0dad39443d74102f21baa2be5a1ae4473  prompt/use-autocomplete/example.txt
cd0251da91ff737a287cfaf046eb7cfa8cda72211280629ce63d97719dce5a7b  prompt/use-autocomplete/first_action.txt
6b16076a70a655d15e37da22c882e560dda2755220248d13f4d6194c6c3f5b89  prompt/use-autocomplete/initialize_plan.txt
291c6cfa05cb02c16e18800ffbb21ef0d7b719c8e9e41d784e8ea12fa19b4760  prompt/use-autocomplete/rci_action.txt
e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  prompt/use-autocomplete/update_action.txt
7cba3b3e27f3b142965243d4c5c6b24e9d9b9c13fbc2e2defb7f39de120d36c6  prompt/use-spinner/action.txt
001033b82c42055e99e31e5c0563245eb66b0ee83f5d12a3e15cab356bfb41fd  prompt/use-spinner/base.txt
4836af716faf6b7dc25ad735d7005567a96190b1d990cfc780df3b7ccc48f4e5  prompt/use-spinner/example.txt
cd0251da91ff737a287cfaf046eb7cfa8cda72211280629ce63d97719dce5a7b  prompt/use-spinner/first_action.txt
6b16076a70a655d15e37da22c882e560dda2755220248d13f4d6194c6c3f5b89  prompt/use-spinner/initialize_plan.txt
415a79868778228b3142a4d18dd6914d7bfb5e76341f14ccd6a6f9b5aa339502  prompt/use-spinner/rci_action.txt
e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  prompt/use-spinner/update_action.txt
"""


def derive_big_prompt(source: bytes) -> bytes:
    """``BIG_PROMPT`` of upstream's ``llm_agent.py`` (a module-level string, stripped as upstream did)."""
    for node in pysource.parse(source).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "BIG_PROMPT" for t in node.targets):
            value = node.value
            if isinstance(value, ast.Call):  # a string literal with .strip()
                value = value.func.value
            return ast.literal_eval(value).strip().encode()
    raise ValueError("llm_agent.py has no BIG_PROMPT string")


DATASET = Dataset(
    name="miniwob",
    root="miniwob",
    files=(
        *(DataFile(f"agenttuning/{path}", url=UPSTREAM + path, sha256=digest)
          for digest, path in (line.split("  ", 1) for line in _FILES.strip().splitlines())),
        DataFile(BIG_PROMPT_FILE, url=UPSTREAM + "llm_agent.py",
                 sha256="ced2a9dc03a17e53c69c42a0e8705045e568d9672a2e6a5146009aacd9f8d23b",
                 derive="agent_gym.envs.miniwob.data:derive_big_prompt", optional=True),
    ),
    description="AgentTuning's 46 MiniWoB++ tasks and its RCI agent's prompts (the task pages ship in `miniwob`)",
    license="MIT (the RCI agent's LICENSE in that folder)",
    homepage="https://github.com/THUDM/AgentTuning/tree/main/eval_heldout/miniwob%2B%2B",
)


@dataclasses.dataclass(frozen=True)
class Episode:
    """One episode: a MiniWoB++ task (its page name, ``subdomain`` upstream) and the seed its page is given."""

    id: str  # "<task>/<seed>", e.g. "click-test/3"
    task: str
    seed: int


def task_names() -> tuple[str, ...]:
    """The 46 tasks of ``available_tasks.txt``, in its order."""
    path = require("miniwob", TASKS_FILE) / TASKS_FILE
    return tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())


@lru_cache(maxsize=1)
def miniwob_tasks() -> frozenset[str]:
    """Every task page the installed ``miniwob`` package has (``click-test``, ...)."""
    from agent_gym.envs.miniwob.engine import html_dir

    return frozenset(p.stem for p in html_dir().glob("*.html"))


def load(split: str = "test") -> tuple[Episode, ...]:
    """The paper's 46 tasks x 10 seeds, task by task (460 episodes)."""
    return tuple(Episode(f"{name}/{seed}", name, seed) for name in task_names() for seed in SEEDS)


def load_file(path: str | Path) -> tuple[Episode, ...]:
    """The episodes of a user's task list (upstream's ``available_tasks.txt`` format, seeds optional).

    Raises ``ValueError`` naming the line for a task the ``miniwob`` package does not have, a seed
    that is not a non-negative integer, or a repeated episode.
    """
    path = Path(path)
    known = miniwob_tasks()
    out: list[Episode] = []
    seen: set[str] = set()
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        name, seeds = fields[0], fields[1:]
        if name not in known:
            raise ValueError(f"{path}: line {n}: no MiniWoB++ task {name!r} in the miniwob package "
                             f"(tasks look like: click-test, enter-text)")
        if not all(s.isdigit() for s in seeds):
            raise ValueError(f"{path}: line {n}: seeds are non-negative integers, got {' '.join(seeds)!r}")
        for seed in (map(int, seeds) if seeds else SEEDS):
            episode = Episode(f"{name}/{seed}", name, seed)
            if episode.id in seen:
                raise ValueError(f"{path}: line {n}: {episode.id} is listed twice")
            seen.add(episode.id)
            out.append(episode)
    return tuple(out)


@dataclasses.dataclass(frozen=True)
class RCIPrompts:
    """The RCI agent's prompt strings for one task (upstream ``prompt.py:Prompt``).

    From the task's own folder ``prompt/<task>/`` when it exists, else ``prompt/``. ``base`` and
    ``rci_action`` have the action regexes filled in as upstream did (its ``llm = "davinci"``).
    ``big_prompt`` is ``None`` when the derived file is absent (see :data:`BIG_PROMPT_FILE`);
    ``few_shot`` is ``prompt/few-shot.json`` (a list of ``{"conversations": [...]}``).
    """

    base: str
    example: str
    first_action: str
    initialize_plan: str
    action: str
    rci_action: str
    update_action: str
    few_shot: list
    big_prompt: str | None
    folder: str


@lru_cache(maxsize=64)
def rci_prompts(task: str) -> RCIPrompts:
    """The RCI prompts for ``task`` from the data directory (raises ``DataMissingError`` naming the fetch)."""
    from agent_gym.envs.miniwob.prompt import fill_regexes

    root = require("miniwob", TASKS_FILE) / PROMPT_DIR
    folder = root / task if (root / task).is_dir() else root

    def read(name: str) -> str:
        return (folder / name).read_text(encoding="utf-8")

    big = dataset("miniwob").path() / BIG_PROMPT_FILE
    return RCIPrompts(
        base=fill_regexes(read("base.txt")), example=read("example.txt"), first_action=read("first_action.txt"),
        initialize_plan=read("initialize_plan.txt"), action=read("action.txt"),
        rci_action=fill_regexes(read("rci_action.txt")), update_action=read("update_action.txt"),
        few_shot=json.loads((root / "few-shot.json").read_text(encoding="utf-8")),
        big_prompt=big.read_text(encoding="utf-8") if big.is_file() else None,
        folder=folder.relative_to(root).as_posix() or ".",
    )
