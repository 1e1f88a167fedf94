"""Constrained Viterbi decoding (minitf/tasks/decode.py) against brute force over every
sequence, and the TokenTagger's use of it."""

import itertools

import pytest
import torch

from minitf.data import tokens as T
from minitf.model.bert import BertForTokenClassification
from minitf.model.config import BertConfig
from minitf.tasks.decode import allowed_transitions, viterbi
from minitf.tasks.tokens import TokenTagger

SEGMENT = ["B", "M", "E", "S"]
JOINT = ["B-n", "I-n", "B-v", "I-v"]
BIO = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
BIOES = ["O", "B-PER", "I-PER", "E-PER", "S-PER"]


def well_formed(labels, sequence):
    allowed = allowed_transitions(labels)
    ids = [labels.index(x) for x in sequence]
    return (bool(allowed.start[ids[0]]) and bool(allowed.end[ids[-1]])
            and all(bool(allowed.follows[a, b]) for a, b in zip(ids, ids[1:], strict=False)))


def brute_force(logits, labels):
    logp = torch.log_softmax(logits, -1)
    best, best_path = float("-inf"), None
    for path in itertools.product(range(len(labels)), repeat=len(logits)):
        if well_formed(labels, [labels[i] for i in path]):
            total = float(sum(logp[t, i] for t, i in enumerate(path)))
            if total > best:
                best, best_path = total, list(path)
    return best_path


@pytest.mark.parametrize("labels, good, bad", [
    (SEGMENT, ["S", "B", "M", "E", "B", "E"], [["M", "E"], ["B", "S"], ["S", "E"], ["B", "M"]]),
    (JOINT, ["B-n", "I-n", "B-v", "B-n"], [["I-n"], ["B-n", "I-v"], ["B-v", "I-v", "I-n"]]),
    (BIO, ["O", "B-PER", "I-PER", "B-LOC", "O"], [["I-PER"], ["O", "I-LOC"], ["B-PER", "I-LOC"]]),
    (BIOES, ["O", "B-PER", "I-PER", "E-PER", "S-PER"], [["B-PER", "O"], ["E-PER"],
                                                         ["B-PER", "I-PER"], ["S-PER", "I-PER"]]),
])
def test_the_rules_of_each_label_scheme(labels, good, bad):
    assert well_formed(labels, good)
    for sequence in bad:
        assert not well_formed(labels, sequence), sequence


@pytest.mark.parametrize("labels", [SEGMENT, JOINT, BIO, BIOES])
def test_viterbi_finds_the_best_well_formed_sequence(labels):
    generator = torch.Generator().manual_seed(len(labels))
    scores = [torch.randn(n, len(labels), generator=generator) * 3 for n in (1, 4, 2, 5, 3, 0)]
    decoded = viterbi(scores, allowed_transitions(labels), batch_size=4)
    assert decoded[-1] == []
    for logits, path in zip(scores[:-1], decoded[:-1], strict=True):
        assert path == brute_force(logits, labels)


def test_with_every_transition_allowed_viterbi_is_argmax():
    labels = ["X", "Y", "Z"]   # kinds minitf does not know: no constraint
    scores = [torch.randn(n, 3, generator=torch.Generator().manual_seed(n)) for n in (7, 30)]
    assert viterbi(scores, allowed_transitions(labels)) == [s.argmax(-1).tolist()
                                                              for s in scores]


def test_an_ill_formed_argmax_is_repaired():
    # argmax says B B E (the first word never closes); the decoder must close it
    logits = torch.log(torch.tensor([[.6, .1, .1, .2], [.6, .1, .3, 0.0001], [.1, .1, .7, .1]]))
    assert [SEGMENT[i] for i in logits.argmax(-1).tolist()] == ["B", "B", "E"]
    best = [SEGMENT[i] for i in viterbi([logits], allowed_transitions(SEGMENT))[0]]
    assert best == ["S", "B", "E"] and well_formed(SEGMENT, best)


def tiny_tagger(labels, decoder):
    from minitf.tokenizers.wordpiece import Tokenizer

    chars = "今天下雨我们去公园"
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars]
    tokenizer = Tokenizer(vocab, do_lower_case=False, model_max_length=8)
    config = BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=32, max_position_embeddings=16,
                        id2label=dict(enumerate(labels)))
    torch.manual_seed(0)
    model = BertForTokenClassification(config)
    with torch.no_grad():
        model.classifier.weight.mul_(50)   # confident, disagreeing positions
    return TokenTagger(model, tokenizer, decoder=decoder)


def test_the_tagger_decodes_well_formed_words_and_argmax_stays_available():
    texts = ["今天下雨我们去公园", "我们去", "雨"]
    sentences = [T.Sentence(list(t), [], n, False) for n, t in enumerate(texts)]
    viterbi_tagger, argmax_tagger = tiny_tagger(JOINT, "viterbi"), tiny_tagger(JOINT, "argmax")
    scores = argmax_tagger.scores(sentences)
    assert argmax_tagger.predict(sentences) == [[JOINT[int(r.argmax())] for r in s]
                                                for s in scores]
    assert not any(well_formed(JOINT, s) for s in argmax_tagger.predict(sentences))
    for sentence in viterbi_tagger.predict(sentences):
        assert well_formed(JOINT, sentence)
    for text, words in zip(texts, viterbi_tagger.segment(texts), strict=True):
        assert "".join(w.text for w in words) == text


def test_an_unknown_decoder_is_refused():
    from minitf.errors import MinitfError

    with pytest.raises(MinitfError, match="--decoder 'beam'"):
        tiny_tagger(SEGMENT, "beam")
