//! Validated domain types. Each one is parsed once at the edge; after that the type
//! guarantees its rule and nothing deeper down checks it again.

use std::fmt;

/// Most artists a single subscribe or unsubscribe message may name.
pub const MAX_ARTISTS_PER_MESSAGE: usize = 25;
/// Longest artist name, in characters, after trimming.
pub const MAX_ARTIST_CHARS: usize = 100;
/// Longest connection id accepted from a request (AWS ids are 16 characters).
const MAX_CONNECTION_ID_CHARS: usize = 128;
/// Longest user id (`sub` claim) accepted.
const MAX_USER_ID_CHARS: usize = 256;
/// Longest event id accepted (EventBridge ids are UUIDs).
const MAX_EVENT_ID_CHARS: usize = 256;

/// Seconds since the Unix epoch: the unit of every timestamp we store (and of DynamoDB TTL).
pub type EpochSeconds = i64;

/// The current time in epoch seconds.
#[must_use]
pub fn now_epoch_seconds() -> EpochSeconds {
    chrono::Utc::now().timestamp()
}

/// An API Gateway connection id, as found in `requestContext.connectionId`.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct ConnectionId(String);

impl TryFrom<String> for ConnectionId {
    type Error = InvalidConnectionId;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}

impl From<ConnectionId> for String {
    fn from(id: ConnectionId) -> Self {
        id.0
    }
}

/// Why a connection id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("connection id must be 1 to {MAX_CONNECTION_ID_CHARS} visible ASCII characters")]
pub struct InvalidConnectionId;

impl ConnectionId {
    /// Parses a connection id: 1 to 128 visible ASCII characters.
    ///
    /// # Errors
    /// [`InvalidConnectionId`] when empty, too long or not visible ASCII.
    pub fn parse(raw: &str) -> Result<Self, InvalidConnectionId> {
        let ok = !raw.is_empty()
            && raw.len() <= MAX_CONNECTION_ID_CHARS
            && raw.bytes().all(|b| b.is_ascii_graphic());
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(InvalidConnectionId)
        }
    }

    /// The id as API Gateway spells it.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Sorts before every real id: the start of a range scan.
    pub(crate) fn lowest() -> Self {
        Self(String::new())
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The user a token was issued to (its `sub` claim).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserId(String);

/// Why a user id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("user id must be 1 to {MAX_USER_ID_CHARS} characters without control characters")]
pub struct InvalidUserId;

impl UserId {
    /// Parses a user id: 1 to 256 characters after trimming, no control characters.
    ///
    /// # Errors
    /// [`InvalidUserId`] when blank, too long or containing control characters.
    pub fn parse(raw: &str) -> Result<Self, InvalidUserId> {
        let trimmed = raw.trim();
        let ok = !trimmed.is_empty()
            && trimmed.chars().count() <= MAX_USER_ID_CHARS
            && !trimmed.chars().any(char::is_control);
        if ok {
            Ok(Self(trimmed.to_owned()))
        } else {
            Err(InvalidUserId)
        }
    }

    /// The user id as the token gave it (trimmed).
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The normalised identity of an artist: lower case, whitespace collapsed to single spaces.
/// `"Taylor  swift"` and `"Taylor Swift"` have one key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ArtistKey(String);

impl ArtistKey {
    /// The key as stored (`ARTIST#<key>` in the index).
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Parses a key as [`Artist::parse`] makes them, such as one read back from a work item:
    /// 1 to [`MAX_ARTIST_KEY_BYTES`] bytes, no control or format characters, words separated
    /// by single spaces. A key is not a display name: NFKC can make it longer than
    /// [`MAX_ARTIST_CHARS`] (`№` is `no`, `…` is `...`), so that limit does not apply.
    ///
    /// # Errors
    /// [`InvalidArtistKey`] says which rule the key broke.
    pub fn parse(raw: &str) -> Result<Self, InvalidArtistKey> {
        if raw.is_empty() {
            return Err(InvalidArtistKey::Empty);
        }
        if raw.len() > MAX_ARTIST_KEY_BYTES {
            return Err(InvalidArtistKey::TooLong);
        }
        if raw
            .chars()
            .any(|c| c.is_control() || is_format_character(c))
        {
            return Err(InvalidArtistKey::InvisibleCharacter);
        }
        if raw
            .split(' ')
            .any(|word| word.is_empty() || word.chars().any(char::is_whitespace))
        {
            return Err(InvalidArtistKey::Whitespace);
        }
        Ok(Self(raw.to_owned()))
    }

    /// Rebuilds a key read back from storage, where it was written by [`Artist::parse`].
    pub(crate) fn from_stored(stored: String) -> Self {
        Self(stored)
    }
}

/// Why a string is not an artist key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidArtistKey {
    /// The empty string.
    #[error("artist key is empty")]
    Empty,
    /// Over [`MAX_ARTIST_KEY_BYTES`] bytes.
    #[error("artist key is longer than {MAX_ARTIST_KEY_BYTES} bytes")]
    TooLong,
    /// Holds a control or format character.
    #[error("artist key contains a control or format character")]
    InvisibleCharacter,
    /// Whitespace other than single spaces between words.
    #[error("artist key has whitespace other than single spaces between words")]
    Whitespace,
}

impl fmt::Display for ArtistKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An artist as a client named it: the display name (trimmed, inner whitespace collapsed)
/// and its [`ArtistKey`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artist {
    name: String,
    key: ArtistKey,
}

/// Why an artist name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidArtist {
    /// Nothing but whitespace.
    #[error("artist name is empty")]
    Empty,
    /// Longer than [`MAX_ARTIST_CHARS`] after trimming.
    #[error("artist name is longer than {MAX_ARTIST_CHARS} characters")]
    TooLong,
    /// Holds a control character (newline, tab, NUL, ...).
    #[error("artist name contains a control character")]
    ControlCharacter,
    /// Holds an invisible format character: zero-width, byte order mark, bidi control, ...
    #[error("artist name contains an invisible format or bidi control character")]
    FormatCharacter,
    /// A letter carries more combining marks than any script needs.
    #[error("artist name stacks more than {MAX_COMBINING_RUN} combining marks on one letter")]
    TooManyCombiningMarks,
}

/// Most combining marks allowed on one base character (after canonical decomposition):
/// Vietnamese needs two, Devanagari and Tibetan clusters three or four.
pub const MAX_COMBINING_RUN: usize = 4;
/// Longest artist key in bytes: it is part of an index key, and NFKC may expand a character
/// to many (U+FDFA becomes 18 letters).
pub const MAX_ARTIST_KEY_BYTES: usize = 1024;

/// Unicode's format characters (General Category Cf, Unicode 16): zero-width spaces and
/// joiners, the byte order mark, bidi embeddings, overrides and isolates, invisible operators,
/// tags. None belongs in a name, and each makes two names that look the same differ.
const FORMAT_CHARACTERS: &[(char, char)] = &[
    ('\u{00AD}', '\u{00AD}'),
    ('\u{0600}', '\u{0605}'),
    ('\u{061C}', '\u{061C}'),
    ('\u{06DD}', '\u{06DD}'),
    ('\u{070F}', '\u{070F}'),
    ('\u{0890}', '\u{0891}'),
    ('\u{08E2}', '\u{08E2}'),
    ('\u{180E}', '\u{180E}'),
    ('\u{200B}', '\u{200F}'),
    ('\u{202A}', '\u{202E}'),
    ('\u{2060}', '\u{2064}'),
    ('\u{2066}', '\u{206F}'),
    ('\u{FEFF}', '\u{FEFF}'),
    ('\u{FFF9}', '\u{FFFB}'),
    ('\u{110BD}', '\u{110BD}'),
    ('\u{110CD}', '\u{110CD}'),
    ('\u{13430}', '\u{1343F}'),
    ('\u{1BCA0}', '\u{1BCA3}'),
    ('\u{1D173}', '\u{1D17A}'),
    ('\u{E0001}', '\u{E0001}'),
    ('\u{E0020}', '\u{E007F}'),
];

fn is_format_character(c: char) -> bool {
    FORMAT_CHARACTERS
        .iter()
        .any(|(first, last)| (*first..=*last).contains(&c))
}

/// The longest run of combining marks in `name`'s canonical decomposition.
fn longest_combining_run(name: &str) -> usize {
    use unicode_normalization::UnicodeNormalization as _;
    use unicode_normalization::char::is_combining_mark;
    let (mut longest, mut run) = (0, 0);
    for c in name.nfd() {
        run = if is_combining_mark(c) { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    longest
}

/// The key of a display name: compatibility-normalised (NFKC: fullwidth and ligature forms
/// become plain letters, composed and decomposed accents agree), case-folded (full folding:
/// `ß` is `ss`), normalised again, with whitespace collapsed to single spaces.
fn artist_key(name: &str) -> String {
    use unicode_normalization::UnicodeNormalization as _;
    let composed: String = name.nfkc().collect();
    let folded = caseless::default_case_fold_str(&composed);
    let key: String = folded.nfkc().collect();
    key.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl Artist {
    /// Parses an artist name: 1 to 100 characters after trimming, no control or format
    /// characters, at most [`MAX_COMBINING_RUN`] combining marks on a letter. The display name
    /// is kept as sent (trimmed, inner whitespace collapsed); the key is NFKC plus case
    /// folding, so every spelling of a name that looks the same reaches the same fans.
    ///
    /// # Errors
    /// [`InvalidArtist`] says which rule the name broke.
    pub fn parse(raw: &str) -> Result<Self, InvalidArtist> {
        if raw.chars().any(char::is_control) {
            return Err(InvalidArtist::ControlCharacter);
        }
        if raw.chars().any(is_format_character) {
            return Err(InvalidArtist::FormatCharacter);
        }
        let name = raw.split_whitespace().collect::<Vec<_>>().join(" ");
        if name.is_empty() {
            return Err(InvalidArtist::Empty);
        }
        if name.chars().count() > MAX_ARTIST_CHARS {
            return Err(InvalidArtist::TooLong);
        }
        if longest_combining_run(&name) > MAX_COMBINING_RUN {
            return Err(InvalidArtist::TooManyCombiningMarks);
        }
        let key = artist_key(&name);
        if key.is_empty()
            || key
                .chars()
                .any(|c| c.is_control() || is_format_character(c))
        {
            return Err(InvalidArtist::FormatCharacter);
        }
        if key.len() > MAX_ARTIST_KEY_BYTES {
            return Err(InvalidArtist::TooLong);
        }
        Ok(Self {
            name,
            key: ArtistKey(key),
        })
    }

    /// The name to show back to people.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The normalised key.
    #[must_use]
    pub fn key(&self) -> &ArtistKey {
        &self.key
    }
}

/// Why a list of artists was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidArtists {
    /// The list was empty.
    #[error("artists must name at least one artist")]
    Empty,
    /// More than [`MAX_ARTISTS_PER_MESSAGE`] names.
    #[error("at most {MAX_ARTISTS_PER_MESSAGE} artists per message, got {0}")]
    TooMany(usize),
    /// One name broke a rule; `index` is its position in the list.
    #[error("artists[{index}]: {reason}")]
    Artist {
        /// Position in the list the client sent.
        index: usize,
        /// The rule it broke.
        reason: InvalidArtist,
    },
}

/// A non-empty list of at most [`MAX_ARTISTS_PER_MESSAGE`] artists, duplicates (by key) removed,
/// first spelling kept, order kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtistList(Vec<Artist>);

impl ArtistList {
    /// Parses the names a client sent.
    ///
    /// # Errors
    /// [`InvalidArtists`] for an empty or too long list, or the first invalid name.
    pub fn parse<S: AsRef<str>>(names: &[S]) -> Result<Self, InvalidArtists> {
        if names.is_empty() {
            return Err(InvalidArtists::Empty);
        }
        if names.len() > MAX_ARTISTS_PER_MESSAGE {
            return Err(InvalidArtists::TooMany(names.len()));
        }
        let mut artists: Vec<Artist> = Vec::with_capacity(names.len());
        for (index, raw) in names.iter().enumerate() {
            let artist = Artist::parse(raw.as_ref())
                .map_err(|reason| InvalidArtists::Artist { index, reason })?;
            if !artists.iter().any(|a| a.key == artist.key) {
                artists.push(artist);
            }
        }
        Ok(Self(artists))
    }

    /// The artists, in the order the client gave them.
    #[must_use]
    pub fn as_slice(&self) -> &[Artist] {
        &self.0
    }

    /// The display names, in order.
    #[must_use]
    pub fn names(&self) -> Vec<String> {
        self.0.iter().map(|a| a.name.clone()).collect()
    }
}

/// The id of an EventBridge event, the unit of de-duplication.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventId(String);

/// Why an event id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event id must be 1 to {MAX_EVENT_ID_CHARS} visible ASCII characters")]
pub struct InvalidEventId;

impl EventId {
    /// Parses an event id: 1 to 256 visible ASCII characters.
    ///
    /// # Errors
    /// [`InvalidEventId`] when empty, too long or not visible ASCII.
    pub fn parse(raw: &str) -> Result<Self, InvalidEventId> {
        let ok = !raw.is_empty()
            && raw.len() <= MAX_EVENT_ID_CHARS
            && raw.bytes().all(|b| b.is_ascii_graphic());
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(InvalidEventId)
        }
    }

    /// The id as EventBridge gave it.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which artists a connection may subscribe to, from the token's optional `artists` claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// No `artists` claim: any artist.
    Any,
    /// Only these keys.
    Only(Vec<ArtistKey>),
}

impl Scope {
    /// Whether this scope lets a connection subscribe to `key`.
    #[must_use]
    pub fn allows(&self, key: &ArtistKey) -> bool {
        match self {
            Self::Any => true,
            Self::Only(keys) => keys.contains(key),
        }
    }
}

/// A count (a length, a number of milliseconds) as a `u64`, `u64::MAX` if it does not fit:
/// counts in metrics and reports saturate rather than fail.
#[must_use]
pub fn saturating_u64(n: impl TryInto<u64>) -> u64 {
    n.try_into().unwrap_or(u64::MAX)
}

/// How many partitions each artist's subscriber index is split into.
///
/// One index partition takes about 1,000 writes/s. When a sale is announced and 100k fans
/// subscribe to one artist within a minute, a single partition key throttles, and DynamoDB's
/// back-pressure from the index throttles the base table's writes with it. Spread over 16 keys,
/// a hot artist takes about 16,000 subscribes/s, and a fan-out reads the 16 shards side by side
/// (one work item each). More shards cost one more query per shard for every notify of a small
/// artist. This is part of the stored layout: changing it strands existing subscriptions (they
/// would be read under the wrong keys) until they expire.
pub const SHARDS: u16 = 16;

/// One of the [`SHARDS`] slices of an artist's subscriber index.
///
/// A connection's subscriptions all land in the shard [`Shard::of`] its id: a stable hash
/// (64-bit FNV-1a of the id's bytes) modulo the shard count. Stable means stable across
/// releases and processes: changing it strands every subscription written before.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "u16", into = "u16")]
pub struct Shard(u16);

impl TryFrom<u16> for Shard {
    type Error = InvalidShard;
    fn try_from(n: u16) -> Result<Self, Self::Error> {
        Self::new(n)
    }
}

impl From<Shard> for u16 {
    fn from(shard: Shard) -> Self {
        shard.0
    }
}

/// A shard number outside `0..SHARDS`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("shard must be below {}", SHARDS)]
pub struct InvalidShard;

impl Shard {
    /// The shard of a connection's subscriptions.
    #[must_use]
    pub fn of(id: &ConnectionId) -> Self {
        const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
        const PRIME: u64 = 0x0100_0000_01b3;
        let hash = id
            .as_str()
            .bytes()
            .fold(OFFSET, |h, b| (h ^ u64::from(b)).wrapping_mul(PRIME));
        Self(u16::try_from(hash % u64::from(SHARDS)).unwrap_or(0))
    }

    /// Shard `n`.
    ///
    /// # Errors
    /// [`InvalidShard`] when `n` is not below [`SHARDS`].
    pub fn new(n: u16) -> Result<Self, InvalidShard> {
        if n < SHARDS {
            Ok(Self(n))
        } else {
            Err(InvalidShard)
        }
    }

    /// Every shard, in order.
    pub fn all() -> impl Iterator<Item = Self> {
        (0..SHARDS).map(Self)
    }

    /// The shard's number.
    #[must_use]
    pub fn number(self) -> u16 {
        self.0
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A live WebSocket connection, as recorded by `$connect`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// API Gateway's id for it.
    pub id: ConnectionId,
    /// Who connected.
    pub user_id: UserId,
    /// When `$connect` accepted it.
    pub connected_at: EpochSeconds,
    /// When its records lapse (the table's TTL attribute).
    pub expires_at: EpochSeconds,
    /// What it may subscribe to.
    pub scope: Scope,
    /// The rooms (artist keys, sorted) it may publish to: the token's `publish` claim; empty
    /// for a subscribe-only connection.
    pub publish: Vec<ArtistKey>,
}

impl Connection {
    /// Whether this connection may publish to `artist`'s room.
    #[must_use]
    pub fn may_publish(&self, artist: &ArtistKey) -> bool {
        self.publish.binary_search(artist).is_ok()
    }

    /// Whether the record still counts at `now` (TTL deletion is lazy, so reads check this).
    #[must_use]
    pub fn is_live(&self, now: EpochSeconds) -> bool {
        self.expires_at > now
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
pub(crate) mod tests {
    use super::*;

    /// A realistic 98-character name whose key is 102 characters (`№` is `no`, `Ⅸ` is `ix`,
    /// `…` is `...`).
    pub(crate) const LONG_KEY_NAME: &str = "The Royal Concertgebouw Symphony Orchestra & Choir \u{2116} \u{2168}\u{2026} Beethoven Symphony No. 9 Live in Amsterdam";

    #[test]
    fn shards_are_a_stable_hash_of_the_connection_id() {
        // Pinned values: a change here strands every subscription already written.
        let shard = |id| Shard::of(&ConnectionId::parse(id).unwrap()).number();
        assert_eq!(shard("Tz1RxcgYvHcCF9A="), 6);
        assert_eq!(shard("Uq2SydhZwIcCGaB="), 12);
        assert_eq!(Shard::all().count(), usize::from(SHARDS));
        assert_eq!(Shard::new(SHARDS), Err(InvalidShard));
    }

    #[test]
    fn artist_keys_ignore_case_and_collapse_whitespace() {
        let a = Artist::parse("  Taylor   swift ").unwrap();
        let b = Artist::parse("Taylor Swift").unwrap();
        assert_eq!(a.key(), b.key());
        assert_eq!(a.name(), "Taylor swift");
        assert_eq!(a.key().as_str(), "taylor swift");
    }

    #[test]
    fn spellings_that_look_the_same_share_one_key_and_keep_their_display_name() {
        let key = |name: &str| Artist::parse(name).unwrap().key().clone();
        assert_eq!(
            key("Beyonc\u{e9}"),
            key("Beyonce\u{301}"),
            "composed and decomposed"
        );
        assert_eq!(
            key("\u{FF21}\u{FF44}\u{FF45}\u{FF4C}\u{FF45}"),
            key("Adele"),
            "fullwidth"
        );
        assert_eq!(key("STRASSE"), key("Stra\u{df}e"), "full case folding");
        assert_eq!(key("\u{FB01}ona"), key("fiona"), "ligature");
        assert_eq!(
            key("Sigur\u{3000}R\u{f3}s"),
            key("sigur r\u{f3}s"),
            "ideographic space"
        );
        assert_eq!(
            Artist::parse("\u{FF21}dele").unwrap().name(),
            "\u{FF21}dele"
        );
    }

    #[test]
    fn invisible_format_and_bidi_characters_are_refused() {
        for name in [
            "Ad\u{200B}ele",
            "\u{FEFF}Adele",
            "Adele\u{202E}",
            "A\u{2066}dele\u{2069}",
            "Ad\u{AD}ele",
        ] {
            assert_eq!(
                Artist::parse(name),
                Err(InvalidArtist::FormatCharacter),
                "{name:?}"
            );
        }
    }

    #[test]
    fn a_letter_may_carry_a_few_combining_marks_but_not_a_pile() {
        assert!(
            Artist::parse("Vi\u{1EC7}t").is_ok(),
            "Vietnamese: two marks"
        );
        assert!(Artist::parse(&format!("a{}", "\u{301}".repeat(4))).is_ok());
        assert_eq!(
            Artist::parse(&format!("a{}", "\u{301}".repeat(99))),
            Err(InvalidArtist::TooManyCombiningMarks)
        );
    }

    #[test]
    fn artist_names_with_control_characters_are_refused() {
        assert_eq!(
            Artist::parse("Ad\u{0}ele"),
            Err(InvalidArtist::ControlCharacter)
        );
        assert_eq!(
            Artist::parse("Ad\nele"),
            Err(InvalidArtist::ControlCharacter)
        );
    }

    #[test]
    fn artist_names_are_one_to_a_hundred_characters_after_trimming() {
        assert_eq!(Artist::parse("   "), Err(InvalidArtist::Empty));
        assert!(Artist::parse(&"é".repeat(100)).is_ok());
        assert_eq!(Artist::parse(&"é".repeat(101)), Err(InvalidArtist::TooLong));
    }

    #[test]
    fn a_key_longer_than_a_name_may_be_is_still_a_key() {
        let artist = Artist::parse(LONG_KEY_NAME).unwrap();
        assert!(artist.key().as_str().chars().count() > MAX_ARTIST_CHARS);
        assert_eq!(
            ArtistKey::parse(artist.key().as_str()),
            Ok(artist.key().clone())
        );
    }

    #[test]
    fn strings_no_name_could_have_as_its_key_are_refused() {
        for (raw, reason) in [
            ("", InvalidArtistKey::Empty),
            ("ad\u{200B}ele", InvalidArtistKey::InvisibleCharacter),
            ("ad\nele", InvalidArtistKey::InvisibleCharacter),
            (" adele", InvalidArtistKey::Whitespace),
            ("taylor  swift", InvalidArtistKey::Whitespace),
            ("sigur\u{3000}r\u{f3}s", InvalidArtistKey::Whitespace),
        ] {
            assert_eq!(ArtistKey::parse(raw), Err(reason), "{raw:?}");
        }
        assert_eq!(
            ArtistKey::parse(&"a".repeat(MAX_ARTIST_KEY_BYTES + 1)),
            Err(InvalidArtistKey::TooLong)
        );
    }

    #[test]
    fn artist_lists_drop_duplicates_by_key_keeping_the_first_spelling() {
        let list = ArtistList::parse(&["Adele", "ADELE", "Taylor Swift"]).unwrap();
        assert_eq!(list.names(), vec!["Adele", "Taylor Swift"]);
    }

    #[test]
    fn artist_lists_must_hold_one_to_twenty_five_names() {
        let none: [&str; 0] = [];
        assert_eq!(ArtistList::parse(&none), Err(InvalidArtists::Empty));
        let many: Vec<String> = (0..26).map(|i| format!("Artist {i}")).collect();
        assert_eq!(ArtistList::parse(&many), Err(InvalidArtists::TooMany(26)));
        assert_eq!(ArtistList::parse(&many[..25]).unwrap().as_slice().len(), 25);
    }

    #[test]
    fn artist_list_errors_name_the_position_of_the_bad_name() {
        assert_eq!(
            ArtistList::parse(&["Adele", ""]),
            Err(InvalidArtists::Artist {
                index: 1,
                reason: InvalidArtist::Empty
            })
        );
    }

    #[test]
    fn connection_ids_must_be_visible_ascii() {
        assert!(ConnectionId::parse("Tz1RxcgYvHcCF9A=").is_ok());
        assert!(ConnectionId::parse("").is_err());
        assert!(ConnectionId::parse("a b").is_err());
        assert!(ConnectionId::parse(&"a".repeat(129)).is_err());
    }

    #[test]
    fn scopes_allow_only_their_keys() {
        let adele = Artist::parse("Adele").unwrap();
        let other = Artist::parse("Muse").unwrap();
        let scope = Scope::Only(vec![adele.key().clone()]);
        assert!(scope.allows(adele.key()));
        assert!(!scope.allows(other.key()));
        assert!(Scope::Any.allows(other.key()));
    }
}
