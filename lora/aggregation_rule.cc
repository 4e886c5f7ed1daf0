// Parsing aggregation rules; see aggregation_rule.h.
#include "lora/aggregation_rule.h"

#include <cmath>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace openforce::lora {
namespace {

constexpr absl::string_view kAccepted =
    "an exact strategy (fedavg, ffa, svd) followed by optional '+clip[:m]', "
    "optional '+direction', and at most one of '+median', "
    "'+trimmed_mean[:beta]', '+krum[:f]', "
    "'+centered_clip[:tau]'";

absl::Status Invalid(absl::string_view text, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(
      "aggregation '", text, "': ", why, " (accepted: ", kAccepted, ")"));
}

}  // namespace

absl::StatusOr<AggregationRule> ParseAggregationRule(absl::string_view text) {
  if (text.empty()) text = kDefaultAggregation;
  AggregationRule rule;
  const std::vector<absl::string_view> parts = absl::StrSplit(text, '+');
  bool combiner_set = false;
  bool clip_set = false;
  bool direction_set = false;
  for (size_t i = 0; i < parts.size(); ++i) {
    const std::vector<absl::string_view> name_value =
        absl::StrSplit(parts[i], absl::MaxSplits(':', 1));
    const absl::string_view name = name_value[0];
    const bool has_value = name_value.size() == 2;
    if (i == 0) {
      if (name == "fedavg") {
        rule.exact = ExactStrategy::kFedAvg;
      } else if (name == "ffa") {
        rule.exact = ExactStrategy::kFfa;
      } else if (name == "svd") {
        rule.exact = ExactStrategy::kSvd;
      } else {
        return Invalid(
            text, absl::StrCat("'", parts[i], "' is not an exact strategy"));
      }
      if (has_value) {
        return Invalid(text, absl::StrCat("'", name, "' takes no parameter"));
      }
      continue;
    }
    double value = 0;
    if (has_value && !absl::SimpleAtod(name_value[1], &value)) {
      return Invalid(text, absl::StrCat("'", name_value[1], "' in '", parts[i],
                                        "' is not a number"));
    }
    if (name == "clip") {
      if (clip_set) return Invalid(text, "'clip' appears twice");
      clip_set = true;
      rule.clip_multiple = has_value ? value : 2.0;
      if (!(rule.clip_multiple >= 1) || !std::isfinite(rule.clip_multiple)) {
        return Invalid(text, "the clip multiple must be a number >= 1");
      }
      continue;
    }
    if (name == "direction") {
      if (direction_set) return Invalid(text, "'direction' appears twice");
      if (has_value) return Invalid(text, "'direction' takes no parameter");
      direction_set = true;
      rule.drop_opposed = true;
      continue;
    }
    if (name != "median" && name != "trimmed_mean" && name != "krum" &&
        name != "centered_clip") {
      return Invalid(text, absl::StrCat("unknown step '", parts[i], "'"));
    }
    if (combiner_set) {
      return Invalid(
          text,
          "only one of median, trimmed_mean, krum, centered_clip may appear");
    }
    combiner_set = true;
    if (name == "median") {
      if (has_value) return Invalid(text, "'median' takes no parameter");
      rule.combiner = RobustCombiner::kMedian;
    } else if (name == "trimmed_mean") {
      rule.combiner = RobustCombiner::kTrimmedMean;
      if (has_value) rule.trim_fraction = value;
      if (!(rule.trim_fraction > 0 && rule.trim_fraction < 0.5)) {
        return Invalid(text, "trimmed_mean's beta must be in (0, 0.5)");
      }
    } else if (name == "centered_clip") {
      rule.combiner = RobustCombiner::kCenteredClip;
      if (has_value) rule.center_clip_tau = value;
      if (!(rule.center_clip_tau >= 0.1 && rule.center_clip_tau <= 100)) {
        return Invalid(text, "centered_clip's tau must be in [0.1, 100]");
      }
    } else {
      rule.combiner = RobustCombiner::kMultiKrum;
      if (has_value) {
        if (value < 1 || value > 1000 || value != std::floor(value)) {
          return Invalid(text, "krum's f must be a whole number in [1, 1000]");
        }
        rule.krum_f = static_cast<int>(value);
      }
    }
  }
  if (rule.exact == ExactStrategy::kSvd &&
      (rule.combiner == RobustCombiner::kMedian ||
       rule.combiner == RobustCombiner::kTrimmedMean)) {
    return Invalid(text,
                   "svd combines products B A exactly; a coordinate-wise rule "
                   "on the factors would not (use clip, krum or centered_clip "
                   "with svd)");
  }
  return rule;
}

std::string FormatAggregationRule(const AggregationRule& rule) {
  std::string text;
  switch (rule.exact) {
    case ExactStrategy::kFedAvg:
      text = "fedavg";
      break;
    case ExactStrategy::kFfa:
      text = "ffa";
      break;
    case ExactStrategy::kSvd:
      text = "svd";
      break;
  }
  if (rule.clip_multiple > 0)
    absl::StrAppend(&text, "+clip:", rule.clip_multiple);
  if (rule.drop_opposed) absl::StrAppend(&text, "+direction");
  switch (rule.combiner) {
    case RobustCombiner::kMean:
      break;
    case RobustCombiner::kMedian:
      absl::StrAppend(&text, "+median");
      break;
    case RobustCombiner::kTrimmedMean:
      absl::StrAppend(&text, "+trimmed_mean:", rule.trim_fraction);
      break;
    case RobustCombiner::kMultiKrum:
      absl::StrAppend(&text, "+krum");
      if (rule.krum_f > 0) absl::StrAppend(&text, ":", rule.krum_f);
      break;
    case RobustCombiner::kCenteredClip:
      absl::StrAppend(&text, "+centered_clip:", rule.center_clip_tau);
      break;
  }
  return text;
}

}  // namespace openforce::lora
