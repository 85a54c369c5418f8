"""A few distillation steps of a tiny student through the library's `distill_learner` and `fit_resumable`: DDP when started by
torchrun, one process otherwise; then `evaluate` of a small segmenter on 5 test images (each rank scores its share) and a value
`from_rank0` computes on rank 0 alone. Writes this rank's recorded losses, confusion matrix and value to `<out>/losses-<rank>.json`;
rank 0 writes the checkpoint."""
import json, os, sys
from pathlib import Path
import torch
from fastai.data.core import DataLoaders
from fastai.data.load import DataLoader
from fastai.torch_core import set_seed
from unip_nb.attention import create_vit
from unip_nb.config import PretrainRecipe
from unip_nb.distill import DistilledStudent, distill_learner, resolve_terms, target_terms, unip_student
from unip_nb.distributed import (close_distributed, eval_sharded, from_rank0, init_distributed, sharded,
                                 world)
from unip_nb.segeval import evaluate
from unip_nb.training import fit_resumable, split_batch

out = Path(sys.argv[1])
if "RANK" in os.environ: init_distributed()
rank, size = world()
torch.set_num_threads(1)
recipe = PretrainRecipe(epochs=2, batch_size=8, warmup_epochs=1, accum=2)
set_seed(0, reproducible=True)
images = torch.randn(16, 3, 32, 32)
teacher = create_vit(dict(patch_size=8, embed_dim=48, depth=3, num_heads=4), 32)
student = unip_student(dict(patch_size=8, embed_dim=32, depth=2, num_heads=2), 32, last_heads=4, drop_path=0.0)
train = DataLoader([(x,) for x in images], bs=split_batch(recipe), shuffle=True, drop_last=True)
train.rng.seed(0)  # every rank draws the same epoch order
train = sharded(train)
terms = resolve_terms(target_terms(2), len(teacher.blocks), 4, len(student.blocks))
learn = distill_learner(DistilledStudent(student, terms, teacher.embed_dim), teacher, DataLoaders(train, DataLoader([], bs=1)), recipe)
fit = fit_resumable(learn, recipe.epochs, out/"student.partial.pt", "distill")
set_seed(1)
segmenter = torch.nn.Conv2d(3, 3, 1)
test_set = DataLoader(list(zip(torch.randn(5, 3, 12, 16), torch.randint(0, 3, (5, 12, 16)))), bs=1)
conf = evaluate(segmenter, test_set, 3, crop=8, stride=6)["conf"]
(out/f"losses-{rank}.json").write_text(json.dumps(dict(fit, world=size, batch_per_rank=split_batch(recipe), steps=len(learn.dls.train),
                                                       conf=conf.tolist(), scored=len(eval_sharded(test_set)), from_rank0=from_rank0(lambda: world()[0]))))
close_distributed()
