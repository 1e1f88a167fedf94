"""The baseline every pre-trained model has to beat: TF-IDF on character n-grams + logistic
regression, in a few lines of torch (runtime dependencies only; scikit-learn's TfidfVectorizer
+ LogisticRegression is its test oracle, tests/test_tfidf.py).

    features   character 1-3-grams of the training texts; tf-idf with scikit-learn's defaults:
               raw counts × (ln((1 + n) / (1 + df)) + 1), each row scaled to unit length
    classifier softmax regression, L2 penalty ||W||² / (2 C) on the summed loss (C = 1, the bias
               unpenalised; with two classes scaled to scikit-learn's one-vector form), fitted
               by L-BFGS on the whole set at once
    targets    class ids, or class probabilities (n, C): soft targets, what self-training's
               student learns from (`self_trained`, the same recipe as
               minitf/recipes/self_train.py: teacher on the labels, its probabilities on the
               unlabelled texts, a student on both)

Texts in, probabilities out: `TfidfClassifier().fit(texts, labels).predict_proba(texts)`.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Sequence

import torch


def char_ngrams(text: str, n_min: int = 1, n_max: int = 3) -> Counter[str]:
    """Counts of the text's character n-grams (scikit-learn's analyzer="char": spaces runs
    kept as they are)."""
    return Counter(text[i:i + n] for n in range(n_min, n_max + 1)
                   for i in range(len(text) - n + 1))


class TfidfClassifier:
    def __init__(self, n_max: int = 3, C: float = 1.0, max_iter: int = 200):
        self.n_max, self.C, self.max_iter = n_max, C, max_iter
        self.vocabulary: dict[str, int] = {}
        self.idf = torch.empty(0)
        self.weight = torch.empty(0)  # (features, classes)
        self.bias = torch.empty(0)    # (classes,)

    def features(self, texts: Sequence[str]) -> torch.Tensor:
        """(len(texts), features) sparse tf-idf rows of unit length; unseen n-grams dropped."""
        rows, cols, values = [], [], []
        for r, text in enumerate(texts):
            counts = [(self.vocabulary[g], c) for g, c in char_ngrams(text, 1, self.n_max).items()
                      if g in self.vocabulary]
            rows += [r] * len(counts)
            cols += [i for i, _ in counts]
            values += [c for _, c in counts]
        cols_t = torch.tensor(cols, dtype=torch.long)
        vals = torch.tensor(values, dtype=torch.float64) * self.idf[cols_t]
        row_t = torch.tensor(rows, dtype=torch.long)
        norms = torch.zeros(len(texts), dtype=torch.float64).index_add_(0, row_t, vals ** 2)
        vals = vals / norms.sqrt().clamp_min(1e-12)[row_t]
        return torch.sparse_coo_tensor(torch.stack([row_t, cols_t]), vals,
                                       (len(texts), len(self.vocabulary)),
                                       check_invariants=False).coalesce()

    def fit(self, texts: Sequence[str], targets: Sequence[int] | torch.Tensor,
            num_classes: int | None = None) -> TfidfClassifier:
        """Vocabulary and idf from `texts`, then the regression. `targets`: class ids, or an
        (n, classes) tensor of probabilities."""
        grams = [char_ngrams(t, 1, self.n_max) for t in texts]
        df = Counter(g for counts in grams for g in counts)
        self.vocabulary = {g: i for i, g in enumerate(sorted(df))}
        n = len(texts)
        self.idf = torch.tensor([math.log((1 + n) / (1 + df[g])) + 1 for g in sorted(df)],
                                dtype=torch.float64)
        if not isinstance(targets, torch.Tensor) or targets.dim() == 1:
            ids = torch.as_tensor(list(targets), dtype=torch.long)
            targets = torch.nn.functional.one_hot(ids, num_classes or int(ids.max()) + 1)
        self._regress(self.features(texts), targets.to(torch.float64))
        return self

    def _regress(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Softmax regression of y (n, classes) on x (n, features) by L-BFGS, the gradient
        written out (x's transpose made once): the sparse products are most of the time."""
        with warnings.catch_warnings():  # "sparse CSR support is in beta": it is what we use
            warnings.simplefilter("ignore", UserWarning)
            x, xt = x.to_sparse_csr(), x.t().coalesce().to_sparse_csr()
        # two classes: scikit-learn fits one vector d = w1 - w0 with penalty |d|² / (2C); at
        # the optimum w0 = -w1 = -d/2, so |W|² / C is the same penalty
        penalty = (1.0 if y.shape[1] == 2 else 0.5) / self.C
        weight = torch.zeros(x.shape[1], y.shape[1], dtype=torch.float64, requires_grad=True)
        bias = torch.zeros(y.shape[1], dtype=torch.float64, requires_grad=True)
        optimizer = torch.optim.LBFGS([weight, bias], max_iter=self.max_iter, tolerance_grad=1e-5,
                                      tolerance_change=1e-9, line_search_fn="strong_wolfe")

        def loss_fn() -> torch.Tensor:
            with torch.no_grad():
                logits = x @ weight + bias                                  # (n, classes)
                log_p = logits.log_softmax(-1)
                loss = -(y * log_p).sum() + penalty * (weight ** 2).sum()
                residual = log_p.exp() * y.sum(-1, keepdim=True) - y        # (n, classes)
                weight.grad = xt @ residual + 2 * penalty * weight
                bias.grad = residual.sum(0)
            return loss

        optimizer.step(loss_fn)
        self.weight, self.bias = weight.detach(), bias.detach()

    def predict_proba(self, texts: Sequence[str]) -> torch.Tensor:
        """(len(texts), classes) class probabilities."""
        return (torch.sparse.mm(self.features(texts), self.weight) + self.bias).softmax(-1)

    def predict(self, texts: Sequence[str]) -> torch.Tensor:
        return self.predict_proba(texts).argmax(-1)


def self_trained(texts: Sequence[str], labels: Sequence[int], unlabelled: Sequence[str],
                 num_classes: int | None = None) -> TfidfClassifier:
    """One round of self-training: a teacher on the labels; its probabilities on `unlabelled`
    as soft targets; a student on the labelled (one-hot) and unlabelled (soft) rows."""
    num_classes = num_classes or max(labels) + 1
    teacher = TfidfClassifier().fit(texts, labels, num_classes)
    if not unlabelled:
        return teacher
    hard = torch.nn.functional.one_hot(torch.as_tensor(list(labels)), num_classes).double()
    soft = teacher.predict_proba(unlabelled)
    return TfidfClassifier().fit([*texts, *unlabelled], torch.cat([hard, soft]))
