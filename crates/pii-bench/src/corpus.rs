//! The seeded corpus: messages of about a target size with labelled entities and hard negatives.

use portcullis_sanitize::EntityType;
use serde::{Deserialize, Serialize};

use crate::negatives::{filler, hard_negative};
use crate::rng::Rng;
use crate::values;

/// Part of a message under construction.
#[derive(Clone, Debug)]
pub enum Piece {
    Text(String),
    Entity(EntityType, String),
}

/// One labelled message (a line of the corpus file).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Message {
    pub id: u64,
    pub text: String,
    pub entities: Vec<LabelledSpan>,
}

/// A byte span with its type label (`EMAIL`, ...), as in corpus and prediction files.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelledSpan {
    pub start: usize,
    pub end: usize,
    #[serde(rename = "type")]
    pub entity: String,
}

/// What to generate.
#[derive(Clone, Copy, Debug)]
pub struct CorpusSpec {
    pub seed: u64,
    pub messages: u64,
    /// Target size of each message in bytes.
    pub message_bytes: usize,
}

/// Generates the corpus for `spec`; the same spec always gives the same corpus.
pub fn generate(spec: CorpusSpec) -> Vec<Message> {
    let mut rng = Rng::new(spec.seed);
    (0..spec.messages)
        .map(|id| message(&mut rng, id, spec.message_bytes))
        .collect()
}

fn message(rng: &mut Rng, id: u64, target: usize) -> Message {
    let mut text = String::with_capacity(target + 512);
    let mut entities = Vec::new();
    while text.len() < target {
        let pieces = match rng.below(10) {
            0..=2 => {
                let entity = *rng.pick(&EntityType::ALL).unwrap_or(&EntityType::Email);
                values::entity(rng, entity)
            }
            3..=6 => vec![Piece::Text(hard_negative(rng))],
            _ => vec![Piece::Text(filler(rng))],
        };
        for piece in pieces {
            match piece {
                Piece::Text(part) => text.push_str(&part),
                Piece::Entity(entity, value) => {
                    let start = text.len();
                    text.push_str(&value);
                    entities.push(LabelledSpan {
                        start,
                        end: text.len(),
                        entity: entity.label().to_owned(),
                    });
                }
            }
        }
        if rng.chance(15) {
            text.push('\n');
        } else if !text.ends_with([' ', '\n']) {
            text.push(' ');
        }
    }
    Message { id, text, entities }
}
