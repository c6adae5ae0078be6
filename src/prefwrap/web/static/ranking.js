// A ranking of a query's K clips, entered one key press (or click) at a time, best clip first.
// The same rules as the pygame window's (prefwrap/oracles/ranking_entry.py):
//   place(p)     clip p (from 0) takes the next rank, below the clips placed so far;
//   tie()        the next clip placed shares the rank of the one placed last;
//   restEqual()  all clips not placed yet share the last rank, which ends the ranking;
//   undo()       takes back the last step (a tie not yet used, else the last clip placed);
// and once one clip is left it takes the last rank by itself, which ends the ranking.
// A finished answer is {preference: "left" | "right" | "equal"} for a pair (as the arrow keys give)
// and {ranking: [[2], [0, 3], [1]]} (groups of clip positions, best first) for more clips.
"use strict";

const PAIR_TEXT = { left: "LEFT is better", right: "RIGHT is better", equal: "EQUAL", skip: "SKIP (can't tell)" };

class RankingEntry {
  constructor(size) {
    this.size = size;
    this.groups = [];
    this.tiePending = false;
    this.notice = "";
  }

  // A copy to go back to: the page keeps the state before an answer's last step, for its undo.
  copy() {
    const other = new RankingEntry(this.size);
    other.groups = this.groups.map((group) => [...group]);
    other.tiePending = this.tiePending;
    return other;
  }

  get steps() { return this.groups.reduce((n, group) => n + group.length, 0) + (this.tiePending ? 1 : 0); }

  unplaced() {
    const placed = new Set(this.groups.flat());
    return [...Array(this.size).keys()].filter((p) => !placed.has(p));
  }

  rankOf(position) {
    const rank = this.groups.findIndex((group) => group.includes(position));
    return rank < 0 ? null : rank;
  }

  isTied(position) {
    const rank = this.rankOf(position);
    return rank !== null && this.groups[rank].length > 1;
  }

  // "3 > 1 = ..." : the ranking so far by clip numbers from 1.
  text() {
    const text = this.groups.map((group) => group.map((p) => p + 1).join(" = ")).join(" > ");
    return text + (this.tiePending ? " = ..." : "");
  }

  place(position) {
    this.notice = "";
    if (!(position >= 0 && position < this.size)) {
      this.notice = `there are ${this.size} clips: press 1 to ${this.size}`;
      return null;
    }
    if (this.rankOf(position) !== null) {
      this.notice = `clip ${position + 1} is ranked already (undo takes it back)`;
      return null;
    }
    if (this.tiePending) {
      this.groups[this.groups.length - 1].push(position);
      this.tiePending = false;
    } else {
      this.groups.push([position]);
    }
    const rest = this.unplaced();
    return rest.length === 1 ? this.finish([...this.groups, rest]) : null;
  }

  tie() {
    this.notice = "";
    if (!this.groups.length) this.notice = "= ties the next clip with the one ranked last: rank a clip first";
    else this.tiePending = true;
  }

  restEqual() {
    this.notice = "";
    const rest = this.unplaced();
    return this.finish(rest.length ? [...this.groups, rest] : this.groups);
  }

  undo() {
    this.notice = "";
    if (this.tiePending) { this.tiePending = false; return true; }
    if (!this.groups.length) { this.notice = "nothing to undo on this query"; return false; }
    this.groups[this.groups.length - 1].pop();
    if (!this.groups[this.groups.length - 1].length) this.groups.pop();
    return true;
  }

  finish(groups) {
    const sorted = groups.map((group) => [...group].sort((a, b) => a - b));
    if (this.size !== 2) return { ranking: sorted };
    if (sorted.length === 1) return { preference: "equal" };
    return { preference: sorted[0][0] === 0 ? "left" : "right" };
  }
}

// An answer as a person reads it: "LEFT is better", or "3 > 1 = 4 > 2" (clip numbers from 1).
function answerText(answer) {
  if (answer.preference) return PAIR_TEXT[answer.preference];
  return answer.ranking.map((group) => group.map((p) => p + 1).join(" = ")).join(" > ");
}

function ordinal(rank) {
  const suffix = [11, 12, 13].includes(rank % 100) ? "th" : { 1: "st", 2: "nd", 3: "rd" }[rank % 10] || "th";
  return `${rank}${suffix}`;
}
