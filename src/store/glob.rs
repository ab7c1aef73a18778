//! Redis-style glob matching for KEYS, SCAN MATCH and pattern subscriptions.
//!
//! `*` any run, `?` one byte, `[abc]`, `[^a-z]` classes, `\x` a literal.
//! Every token but `*` matches exactly one byte. A pattern with little after
//! its first `*` is matched with a single backtrack point for the last `*`,
//! which costs up to (bytes after the first star) × text steps, as Redis's
//! matcher, with its early exit for stars that cannot match longer, does.
//! Any other is compiled once into byte sets and matched run by run: the
//! runs between stars are found leftmost-first with a bit-parallel
//! (shift-and) search, so a text costs about its length times pattern/64
//! word operations, not pattern × text steps. Patterns are at most
//! `MAX_PATTERN_LEN` bytes (the commands that match refuse longer ones, see
//! `cmd::pattern_arg`).

/// The longest glob pattern accepted, in bytes.
pub const MAX_PATTERN_LEN: usize = 1024;

/// A pattern with at most this many bytes after its first star is matched
/// directly: the backtracking matcher goes back over at most those bytes
/// for each byte of the text.
const SHORT_AFTER_STAR: usize = 16;
/// Runs between stars up to this long are searched for directly.
const SHORT_RUN: usize = 8;

/// Whether `text` matches `pattern`.
pub fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    Glob::new(pattern).matches(text)
}

/// A pattern ready to be matched against many texts (KEYS, SCAN).
pub struct Glob<'a> {
    pattern: &'a [u8],
    compiled: Option<Compiled>,
}

impl<'a> Glob<'a> {
    pub fn new(pattern: &'a [u8]) -> Glob<'a> {
        let after_star = pattern.iter().position(|&c| c == b'*').map_or(0, |at| pattern.len() - at - 1);
        let compiled = (after_star > SHORT_AFTER_STAR).then(|| Compiled::new(pattern));
        Glob { pattern, compiled }
    }

    pub fn matches(&self, text: &[u8]) -> bool {
        match &self.compiled {
            Some(compiled) => compiled.matches(text),
            None => backtracking_match(self.pattern, text),
        }
    }
}

fn backtracking_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    // Where to resume after the last `*`: (pattern index after it, text index).
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            while p < pattern.len() && pattern[p] == b'*' {
                p += 1;
            }
            if p == pattern.len() {
                return true;
            }
            star = Some((p, t));
            continue;
        }
        if let Some(next) = match_one(pattern, p, text[t]) {
            p = next;
            t += 1;
            continue;
        }
        match star {
            Some((sp, st)) => {
                star = Some((sp, st + 1));
                p = sp;
                t = st + 1;
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Matches the single-byte token at `p` against `c`; returns the index of the
/// next token on success.
fn match_one(pattern: &[u8], p: usize, c: u8) -> Option<usize> {
    match *pattern.get(p)? {
        b'?' => Some(p + 1),
        b'\\' if p + 1 < pattern.len() => (pattern[p + 1] == c).then_some(p + 2),
        b'[' => {
            let mut i = p + 1;
            let negate = pattern.get(i) == Some(&b'^');
            if negate {
                i += 1;
            }
            let mut matched = false;
            // An unterminated class ends with the pattern, as in Redis.
            while i < pattern.len() && pattern[i] != b']' {
                if pattern[i] == b'\\' && i + 1 < pattern.len() {
                    matched |= pattern[i + 1] == c;
                    i += 2;
                } else if i + 2 < pattern.len() && pattern[i + 1] == b'-' && pattern[i + 2] != b']' {
                    let (lo, hi) = (pattern[i].min(pattern[i + 2]), pattern[i].max(pattern[i + 2]));
                    matched |= (lo..=hi).contains(&c);
                    i += 3;
                } else {
                    matched |= pattern[i] == c;
                    i += 1;
                }
            }
            let next = (i + 1).min(pattern.len());
            (matched != negate).then_some(next)
        }
        literal => (literal == c).then_some(p + 1),
    }
}

/// The bytes one token accepts.
#[derive(Clone, Copy, Default)]
struct ByteSet([u64; 4]);

impl ByteSet {
    fn of(c: u8) -> ByteSet {
        let mut set = ByteSet::default();
        set.insert(c);
        set
    }

    fn insert(&mut self, c: u8) {
        self.0[(c >> 6) as usize] |= 1 << (c & 63);
    }

    fn contains(&self, c: u8) -> bool {
        self.0[(c >> 6) as usize] & (1 << (c & 63)) != 0
    }

    /// The bytes in the set, one step each (a literal costs one, not 256).
    fn members(&self) -> impl Iterator<Item = u8> + '_ {
        self.0.iter().enumerate().flat_map(|(at, &word)| {
            let mut rest = word;
            std::iter::from_fn(move || {
                (rest != 0).then(|| {
                    let bit = rest.trailing_zeros();
                    rest &= rest - 1;
                    (at as u32 * 64 + bit) as u8
                })
            })
        })
    }

    fn inverted(self) -> ByteSet {
        ByteSet(self.0.map(|word| !word))
    }
}

/// The token at `p` and the index of the next one; `None` for a star.
fn token(pattern: &[u8], p: usize) -> (Option<ByteSet>, usize) {
    match pattern[p] {
        b'*' => (None, p + 1),
        b'?' => (Some(ByteSet([u64::MAX; 4])), p + 1),
        b'\\' if p + 1 < pattern.len() => (Some(ByteSet::of(pattern[p + 1])), p + 2),
        b'[' => {
            // The same reading as match_one's.
            let mut i = p + 1;
            let negate = pattern.get(i) == Some(&b'^');
            if negate {
                i += 1;
            }
            let mut set = ByteSet::default();
            while i < pattern.len() && pattern[i] != b']' {
                if pattern[i] == b'\\' && i + 1 < pattern.len() {
                    set.insert(pattern[i + 1]);
                    i += 2;
                } else if i + 2 < pattern.len() && pattern[i + 1] == b'-' && pattern[i + 2] != b']' {
                    for c in pattern[i].min(pattern[i + 2])..=pattern[i].max(pattern[i + 2]) {
                        set.insert(c);
                    }
                    i += 3;
                } else {
                    set.insert(pattern[i]);
                    i += 1;
                }
            }
            (Some(if negate { set.inverted() } else { set }), (i + 1).min(pattern.len()))
        }
        literal => (Some(ByteSet::of(literal)), p + 1),
    }
}

/// A run of one-byte tokens between stars, with what the shift-and search
/// needs when it is long: for each byte, the positions of the run that
/// accept it, as bits.
struct Run {
    sets: Vec<ByteSet>,
    masks: Vec<u64>,
}

impl Run {
    fn new(sets: Vec<ByteSet>, searched: bool) -> Run {
        let words = sets.len().div_ceil(64);
        let mut masks = Vec::new();
        if searched && sets.len() > SHORT_RUN {
            masks = vec![0; 256 * words];
            for (at, set) in sets.iter().enumerate() {
                for c in set.members() {
                    masks[c as usize * words + at / 64] |= 1 << (at % 64);
                }
            }
        }
        Run { sets, masks }
    }

    fn len(&self) -> usize {
        self.sets.len()
    }

    fn matches_at(&self, text: &[u8]) -> bool {
        self.sets.iter().zip(text).all(|(set, &c)| set.contains(c))
    }

    /// Where the leftmost occurrence of the run in `text` ends.
    fn find_end(&self, text: &[u8]) -> Option<usize> {
        let m = self.len();
        if self.masks.is_empty() {
            return (0..(text.len() + 1).saturating_sub(m)).find(|&at| self.matches_at(&text[at..])).map(|at| at + m);
        }
        // Bit j of `state`: the run's first j + 1 tokens match the text
        // ending at the current byte.
        let words = m.div_ceil(64);
        let last = (words - 1, (m - 1) % 64);
        let mut state = vec![0u64; words];
        for (i, &c) in text.iter().enumerate() {
            let mask = &self.masks[c as usize * words..][..words];
            let mut carry = 1;
            for (word, accepts) in state.iter_mut().zip(mask) {
                let out = *word >> 63;
                *word = ((*word << 1) | carry) & accepts;
                carry = out;
            }
            if state[last.0] >> last.1 & 1 == 1 {
                return Some(i + 1);
            }
        }
        None
    }
}

/// A long pattern as runs of one-byte tokens: `head*middle*…*tail`.
struct Compiled {
    head: Run,
    /// Runs between stars: `None` when the pattern has no star.
    middle: Option<Vec<Run>>,
    tail: Run,
}

impl Compiled {
    fn new(pattern: &[u8]) -> Compiled {
        let mut runs = vec![Vec::new()];
        let mut p = 0;
        while p < pattern.len() {
            let (set, next) = token(pattern, p);
            match set {
                Some(set) => runs.last_mut().expect("one run at least").push(set),
                None if !runs.last().expect("one run at least").is_empty() || runs.len() == 1 => runs.push(Vec::new()),
                None => {}
            }
            p = next;
        }
        if runs.len() == 1 {
            let head = Run::new(runs.pop().expect("one run"), false);
            return Compiled { head, middle: None, tail: Run::new(Vec::new(), false) };
        }
        let tail = Run::new(runs.pop().expect("two runs at least"), false);
        let mut runs = runs.into_iter();
        let head = Run::new(runs.next().expect("two runs at least"), false);
        Compiled {
            head,
            middle: Some(runs.filter(|run| !run.is_empty()).map(|run| Run::new(run, true)).collect()),
            tail,
        }
    }

    fn matches(&self, text: &[u8]) -> bool {
        let Some(middle) = &self.middle else {
            return text.len() == self.head.len() && self.head.matches_at(text);
        };
        // The head is anchored at the start, the tail at the end; each
        // middle run is taken at its leftmost place, which leaves the most
        // room for the runs after it.
        if text.len() < self.head.len() + self.tail.len() {
            return false;
        }
        let tail_at = text.len() - self.tail.len();
        if !self.head.matches_at(text) || !self.tail.matches_at(&text[tail_at..]) {
            return false;
        }
        let mut at = self.head.len();
        for run in middle {
            match run.find_end(&text[at..tail_at]) {
                Some(end) => at += end,
                None => return false,
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::{backtracking_match, glob_match, token, Compiled, MAX_PATTERN_LEN};

    fn m(p: &str, t: &str) -> bool {
        glob_match(p.as_bytes(), t.as_bytes())
    }

    #[test]
    fn stars_and_questions() {
        assert!(m("*", ""));
        assert!(m("*", "anything"));
        assert!(m("user:*", "user:42"));
        assert!(!m("user:*", "users:42"));
        assert!(m("h?llo", "hello"));
        assert!(!m("h?llo", "hllo"));
        assert!(m("*a*b*c*", "xxaxxbxxcxx"));
        assert!(!m("*a*b*c", "xxaxxbxxcxx"));
        assert!(m("a**b", "ab"));
        assert!(!m("", "a"));
        assert!(m("", ""));
    }

    #[test]
    fn classes_and_escapes() {
        assert!(m("h[ae]llo", "hallo"));
        assert!(!m("h[ae]llo", "hillo"));
        assert!(m("h[^e]llo", "hallo"));
        assert!(!m("h[^e]llo", "hello"));
        assert!(m("h[a-b]llo", "hbllo"));
        assert!(m("h[b-a]llo", "hallo"));
        assert!(m("a\\*b", "a*b"));
        assert!(!m("a\\*b", "axb"));
        assert!(m("[\\]]", "]"));
        assert!(m("a[bc", "ab"));
    }

    /// A small deterministic generator (xorshift), so failures repeat.
    struct Random(u64);

    impl Random {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }

        fn bytes(&mut self, alphabet: &[u8], len: usize) -> Vec<u8> {
            (0..len).map(|_| alphabet[self.below(alphabet.len())]).collect()
        }
    }

    /// A text the pattern (mostly) matches: a byte each token accepts, a few for each star.
    fn sample(pattern: &[u8], random: &mut Random) -> Vec<u8> {
        let alphabet = b"ab-]^[*?\\";
        let mut text = Vec::new();
        let mut p = 0;
        while p < pattern.len() {
            let (set, next) = token(pattern, p);
            match set {
                None => {
                    let len = random.below(4);
                    text.extend(random.bytes(alphabet, len));
                }
                Some(set) => {
                    let accepted: Vec<u8> = alphabet.iter().copied().filter(|&c| set.contains(c)).collect();
                    text.push(if accepted.is_empty() { b'a' } else { accepted[random.below(accepted.len())] });
                }
            }
            p = next;
        }
        text
    }

    #[test]
    fn compiled_patterns_match_as_the_direct_matcher_does() {
        let mut random = Random(0x2545_f491_4f6c_dd1d);
        let pattern_bytes = b"ab*?[]^-\\";
        let mut matched = 0;
        for round in 0..60_000 {
            let pattern_len = [random.below(12), random.below(40), random.below(150)][round % 3];
            let mut pattern = random.bytes(pattern_bytes, pattern_len);
            if round % 3 == 2 {
                // Few stars, so that the runs between them are long enough
                // for the shift-and search (over 8 tokens, some over 64).
                pattern.retain(|&c| c != b'*');
                for _ in 0..random.below(4) {
                    let at = random.below(pattern.len() + 1);
                    pattern.insert(at, b'*');
                }
            }
            let text = if round % 2 == 0 {
                let text_len = random.below(if round % 3 == 2 { 300 } else { 30 });
                random.bytes(b"ab-]^", text_len)
            } else {
                sample(&pattern, &mut random)
            };
            let direct = backtracking_match(&pattern, &text);
            let compiled = Compiled::new(&pattern).matches(&text);
            matched += direct as usize;
            assert_eq!(
                compiled,
                direct,
                "pattern {:?} text {:?}",
                String::from_utf8_lossy(&pattern),
                String::from_utf8_lossy(&text)
            );
        }
        // Both answers were tried often.
        assert!((10_000..50_000).contains(&matched), "{matched} of 60,000 matched");
    }

    #[test]
    fn compiled_patterns_find_long_runs_between_stars() {
        let run = format!("{}b", "a".repeat(100));
        let text = format!("{}{run}c", "a".repeat(5000));
        assert!(Compiled::new(format!("*{run}*").as_bytes()).matches(text.as_bytes()));
        assert!(Compiled::new(format!("*{run}?").as_bytes()).matches(text.as_bytes()));
        assert!(Compiled::new(format!("a*{run}*c").as_bytes()).matches(text.as_bytes()));
        assert!(!Compiled::new(format!("*{run}*b*").as_bytes()).matches(text.as_bytes()));
        assert!(!Compiled::new(format!("*{run}").as_bytes()).matches(text.as_bytes()));
    }

    #[test]
    fn a_pattern_at_the_limit_against_a_64_kib_text_is_matched_pass_by_pass() {
        // The shape that costs a backtracking matcher pattern × text steps:
        // a long run after a star that nearly matches everywhere.
        let text = "a".repeat(64 * 1024);
        let pattern = format!("*{}b*", "a".repeat(MAX_PATTERN_LEN - 3));
        assert_eq!(pattern.len(), MAX_PATTERN_LEN);
        assert!(!m(&pattern, &text));
        assert!(m(&pattern, &format!("{text}b")));
    }

    #[test]
    fn pathological_patterns_stay_linear_enough() {
        let text = "a".repeat(10_000);
        let pattern = format!("{}b", "*a".repeat(50));
        assert!(!m(&pattern, &text));
    }
}
