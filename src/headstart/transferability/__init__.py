"""Choosing a backbone before training: transferability scores of frozen features, and the ranking."""

from headstart.transferability.ranking import (
           BackboneScores,
           RankResult,
           bundled_backbones,
           rank_backbones,
           rank_bundled,
)
from headstart.transferability.scores import SCORES, ScoreSpec, score_features

__all__ = ["SCORES", "BackboneScores", "RankResult", "ScoreSpec", "bundled_backbones", "rank_backbones", "rank_bundled",
           "score_features"]
