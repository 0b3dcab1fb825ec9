//! The Cedar layer: the generated `Portcullis` schema, strict validation, slicing, evaluation.

use std::collections::{BTreeSet, HashMap};
use std::str::FromStr;

use cedar_policy::{
    ActionConstraint, Authorizer, Context, Decision, Entities, Entity, EntityId, EntityTypeName,
    EntityUid, Policy, PolicyId, PolicySet, Request as CedarRequest, ResourceConstraint,
    RestrictedExpression, Schema, ValidationMode, Validator,
};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use portcullis_core::Request;
use portcullis_core::request::RiskTier;

use crate::catalog::{self, CatalogEntry};
use crate::error::{CedarDiagnostic, PolicyLoadError};

/// Largest Cedar source accepted, in bytes.
pub const MAX_CEDAR_SOURCE_BYTES: usize = 1 << 20;
/// Most Cedar policies in one policy.
pub const MAX_CEDAR_POLICIES: usize = 10_000;
/// Most top-level arguments exposed to Cedar as tags of `context.arguments`.
pub const MAX_CEDAR_ARGUMENTS: usize = 256;
/// Longest argument value exposed to Cedar, in bytes (rendered as JSON when not a string).
pub const MAX_CEDAR_ARGUMENT_BYTES: usize = 16 * 1024;

/// The namespace of every Portcullis entity and action.
pub const NAMESPACE: &str = "Portcullis";

/// The entity and common-type declarations of the schema; actions are added from the catalog.
const SCHEMA_ENTITIES: &str = r#"  // Who acts: the agent authenticated by its token.
  entity Agent = {
    "roles": Set<String>,
    "tags": Set<String>,
    "project"?: String,
    "node"?: String
  };
  // Whom an identity-asserting agent acts for.
  entity User;
  entity Room;
  // What is acted on.
  entity Upstream;
  entity Tool in [Upstream];
  entity Prompt in [Upstream];
  entity Resource;
  entity Model;
  entity Host;
  entity Stream;
  // The request's top-level arguments as tags (strings; other JSON values as their JSON text).
  entity Arguments tags String;
  type RequestContext = {
    "key": String,
    "target": String,
    "time": Long,
    "hour": Long,
    "weekday": Long,
    "risk": String,
    "risk_level": Long,
    "arguments": Arguments,
    "user"?: User,
    "room"?: Room,
    "session"?: String
  };
"#;

/// The Cedar schema (human-readable syntax) of Portcullis' own entities, generated from the
/// catalog: one action per gate-key family.
pub fn schema_text() -> String {
    let mut res = format!("namespace {NAMESPACE} {{\n{SCHEMA_ENTITIES}");
    for (action, resource_type) in actions() {
        res.push_str(&format!(
            "  action \"{action}\" appliesTo {{ principal: [Agent], resource: [{resource_type}], context: RequestContext }};\n"
        ));
    }
    res.push_str("}\n");
    res
}

/// The distinct Cedar actions of the catalog, in catalog order, with their resource types.
pub fn actions() -> Vec<(&'static str, &'static str)> {
    let mut res: Vec<(&'static str, &'static str)> = Vec::new();
    for entry in catalog::CATALOG {
        if !res.iter().any(|(action, _)| *action == entry.cedar_action) {
            res.push((entry.cedar_action, entry.resource_type));
        }
    }
    res
}

/// Validated Cedar policies, sliced by action and resource.
#[derive(Debug)]
pub(crate) struct CedarLayer {
    // INVARIANT (slices-complete): every policy whose scope can match an action sits in that
    // action's `any_resource` set, or (resource `==` constraint) in `by_resource` of that uid.
    // The two sets are disjoint, so memory stays linear in the number of policies.
    slices: HashMap<&'static str, ActionSlice>,
    n_policies: usize,
    types: EntityTypes,
    authorizer: Authorizer,
}

#[derive(Debug)]
struct ActionSlice {
    action_uid: EntityUid,
    any_resource: PolicySet,
    by_resource: HashMap<EntityUid, PolicySet>,
}

/// Policies grouped for one action while slicing.
struct ActionGroup {
    action_uid: EntityUid,
    any_resource: Vec<Policy>,
    by_resource: HashMap<EntityUid, Vec<Policy>>,
}

#[derive(Debug)]
struct EntityTypes {
    agent: EntityTypeName,
    user: EntityTypeName,
    room: EntityTypeName,
    upstream: EntityTypeName,
    arguments: EntityTypeName,
    resources: HashMap<&'static str, EntityTypeName>,
}

/// What the Cedar layer says about one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum CedarOutcome {
    /// No policy can apply to this action and resource.
    NoPolicies,
    /// Policies apply, but none permits or forbids.
    NoDecision,
    Permit(String),
    Forbid(String),
    /// A policy that applies failed to evaluate, or the request could not be expressed.
    Error(Option<String>),
}

impl CedarLayer {
    /// Parses every source, validates the whole set in strict mode against [`schema_text`], and
    /// slices it. Any error refuses the load.
    pub fn compile(sources: &[(String, String)]) -> Result<Self, Vec<PolicyLoadError>> {
        let mut errors = Vec::new();
        let schema = match Schema::from_cedarschema_str(&schema_text()) {
            Ok((schema, _warnings)) => schema,
            Err(error) => {
                return Err(vec![PolicyLoadError::CedarSchema(CedarDiagnostic::new(
                    &error,
                ))]);
            }
        };
        let mut policies: Vec<Policy> = Vec::new();
        let mut seen_ids = BTreeSet::new();
        for (name, text) in sources {
            if text.len() > MAX_CEDAR_SOURCE_BYTES {
                errors.push(PolicyLoadError::CedarTooLarge {
                    name: name.clone(),
                    limit: MAX_CEDAR_SOURCE_BYTES,
                });
                continue;
            }
            let parsed = match PolicySet::from_str(text) {
                Ok(parsed) => parsed,
                Err(error) => {
                    errors.push(PolicyLoadError::CedarParse(
                        name.clone(),
                        CedarDiagnostic::new(&error),
                    ));
                    continue;
                }
            };
            if parsed.templates().next().is_some() {
                errors.push(PolicyLoadError::CedarTemplate(name.clone()));
            }
            for policy in parsed.policies() {
                let id = policy_rule_id(name, policy);
                if !seen_ids.insert(id.clone()) {
                    errors.push(PolicyLoadError::CedarDuplicateId(id));
                    continue;
                }
                policies.push(policy.new_id(PolicyId::new(id)));
            }
        }
        if policies.len() > MAX_CEDAR_POLICIES {
            errors.push(PolicyLoadError::TooMany {
                what: "cedar policies",
                limit: MAX_CEDAR_POLICIES,
            });
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let all = match PolicySet::from_policies(policies.iter().cloned()) {
            Ok(all) => all,
            Err(error) => {
                return Err(vec![PolicyLoadError::CedarValidation(
                    CedarDiagnostic::new(&error),
                )]);
            }
        };
        let validation = Validator::new(schema).validate(&all, ValidationMode::Strict);
        if !validation.validation_passed() {
            return Err(validation
                .validation_errors()
                .map(|error| PolicyLoadError::CedarValidation(CedarDiagnostic::new(error)))
                .collect());
        }
        Self::slice(&policies)
    }

    fn slice(policies: &[Policy]) -> Result<Self, Vec<PolicyLoadError>> {
        let types = EntityTypes::new()?;
        let mut groups: HashMap<&'static str, ActionGroup> = HashMap::new();
        for (action, _) in actions() {
            let group = ActionGroup {
                action_uid: action_uid(action)?,
                any_resource: Vec::new(),
                by_resource: HashMap::new(),
            };
            groups.insert(action, group);
        }
        for policy in policies {
            let action_matches = |uid: &EntityUid| match policy.action_constraint() {
                ActionConstraint::Any => true,
                ActionConstraint::Eq(target) => &target == uid,
                ActionConstraint::In(targets) => targets.contains(uid),
            };
            for group in groups.values_mut() {
                if !action_matches(&group.action_uid) {
                    continue;
                }
                match policy.resource_constraint() {
                    ResourceConstraint::Eq(resource) => {
                        group
                            .by_resource
                            .entry(resource)
                            .or_default()
                            .push(policy.clone());
                    }
                    _ => group.any_resource.push(policy.clone()),
                }
            }
        }
        let mut slices = HashMap::new();
        for (
            action,
            ActionGroup {
                action_uid,
                any_resource,
                by_resource,
            },
        ) in groups
        {
            let to_set = |list: Vec<Policy>| {
                PolicySet::from_policies(list).map_err(|error| {
                    vec![PolicyLoadError::CedarValidation(CedarDiagnostic::new(
                        &error,
                    ))]
                })
            };
            let mut sliced = HashMap::new();
            for (resource, specific) in by_resource {
                sliced.insert(resource, to_set(specific)?);
            }
            slices.insert(
                action,
                ActionSlice {
                    action_uid,
                    any_resource: to_set(any_resource)?,
                    by_resource: sliced,
                },
            );
        }
        Ok(Self {
            slices,
            n_policies: policies.len(),
            types,
            authorizer: Authorizer::new(),
        })
    }

    pub fn n_policies(&self) -> usize {
        self.n_policies
    }

    /// Evaluates the policies that can apply to `request` (key resolved to `entry`) at `now`.
    /// An evaluation error in any of them is [`CedarOutcome::Error`], never a silent skip.
    pub fn evaluate(
        &self,
        request: &Request,
        entry: &CatalogEntry,
        now: Timestamp,
    ) -> CedarOutcome {
        let Some(slice) = self.slices.get(entry.cedar_action) else {
            return CedarOutcome::NoPolicies;
        };
        let Some(resource_type) = self.types.resources.get(entry.resource_type) else {
            return CedarOutcome::Error(None);
        };
        let key = request.action.as_str();
        let target = catalog::tail(entry, key);
        let resource_id = if request.resource.is_empty() {
            target
        } else {
            request.resource.as_str()
        };
        let resource_uid =
            EntityUid::from_type_name_and_id(resource_type.clone(), EntityId::new(resource_id));
        let sets: Vec<&PolicySet> = [
            Some(&slice.any_resource),
            slice.by_resource.get(&resource_uid),
        ]
        .into_iter()
        .flatten()
        .filter(|set| !set.is_empty())
        .collect();
        if sets.is_empty() {
            return CedarOutcome::NoPolicies;
        }
        let Some((cedar_request, entities)) =
            self.build_input(request, slice, resource_uid, entry, target, now)
        else {
            return CedarOutcome::Error(None);
        };
        // INVARIANT (slices-complete): the any-resource and the resource's own policies together
        // are every policy that can apply; their answers merge as one set's would (error, then
        // forbid, then permit), except that an error is never skipped.
        let mut merged = CedarOutcome::NoDecision;
        for set in sets {
            let outcome = self.authorize(&cedar_request, set, &entities);
            merged = merged.merge(outcome);
        }
        merged
    }

    fn authorize(
        &self,
        request: &CedarRequest,
        policies: &PolicySet,
        entities: &Entities,
    ) -> CedarOutcome {
        let response = self.authorizer.is_authorized(request, policies, entities);
        let diagnostics = response.diagnostics();
        // INVARIANT (errors-deny): Cedar skips a policy that errors; Portcullis denies instead.
        let first_error = diagnostics
            .errors()
            .map(|error| match error {
                cedar_policy::AuthorizationError::PolicyEvaluationError(inner) => {
                    inner.policy_id().to_string()
                }
            })
            .min();
        if let Some(policy_id) = first_error {
            return CedarOutcome::Error(Some(policy_id));
        }
        let deciding = diagnostics.reason().map(ToString::to_string).min();
        match (response.decision(), deciding) {
            (Decision::Allow, Some(policy_id)) => CedarOutcome::Permit(policy_id),
            (Decision::Allow, None) => CedarOutcome::Error(None),
            (Decision::Deny, Some(policy_id)) => CedarOutcome::Forbid(policy_id),
            (Decision::Deny, None) => CedarOutcome::NoDecision,
        }
    }

    fn build_input(
        &self,
        request: &Request,
        slice: &ActionSlice,
        resource_uid: EntityUid,
        entry: &CatalogEntry,
        target: &str,
        now: Timestamp,
    ) -> Option<(CedarRequest, Entities)> {
        let subject = &request.subject;
        let string_set = |values: &[String]| {
            RestrictedExpression::new_set(
                values.iter().cloned().map(RestrictedExpression::new_string),
            )
        };
        let mut agent_attrs = HashMap::from([
            ("roles".to_owned(), string_set(&subject.roles)),
            ("tags".to_owned(), string_set(&subject.tags)),
        ]);
        if let Some(project) = &subject.project {
            agent_attrs.insert(
                "project".to_owned(),
                RestrictedExpression::new_string(project.clone()),
            );
        }
        if let Some(node) = &subject.node {
            agent_attrs.insert(
                "node".to_owned(),
                RestrictedExpression::new_string(node.clone()),
            );
        }
        let agent_uid = EntityUid::from_type_name_and_id(
            self.types.agent.clone(),
            EntityId::new(&subject.agent),
        );
        let mut entities =
            vec![Entity::new(agent_uid.clone(), agent_attrs, Default::default()).ok()?];

        let mut resource_parents = std::collections::HashSet::new();
        if matches!(entry.resource_type, "Tool" | "Prompt")
            && let Some((upstream, _)) = resource_uid.id().unescaped().split_once('.')
        {
            let upstream_uid = EntityUid::from_type_name_and_id(
                self.types.upstream.clone(),
                EntityId::new(upstream),
            );
            entities.push(Entity::new_no_attrs(
                upstream_uid.clone(),
                Default::default(),
            ));
            resource_parents.insert(upstream_uid);
        }
        entities.push(Entity::new_no_attrs(resource_uid.clone(), resource_parents));

        let arguments_uid = EntityUid::from_type_name_and_id(
            self.types.arguments.clone(),
            EntityId::new("request"),
        );
        entities.push(
            Entity::new_with_tags(
                arguments_uid.clone(),
                [],
                [],
                argument_tags(&request.context.arguments)?,
            )
            .ok()?,
        );

        let zoned = now.to_zoned(TimeZone::UTC);
        let risk = request.context.risk;
        let mut context = vec![
            (
                "key".to_owned(),
                RestrictedExpression::new_string(request.action.as_str().to_owned()),
            ),
            (
                "target".to_owned(),
                RestrictedExpression::new_string(target.to_owned()),
            ),
            (
                "time".to_owned(),
                RestrictedExpression::new_long(now.as_second()),
            ),
            (
                "hour".to_owned(),
                RestrictedExpression::new_long(i64::from(zoned.hour())),
            ),
            (
                "weekday".to_owned(),
                RestrictedExpression::new_long(i64::from(zoned.weekday().to_monday_one_offset())),
            ),
            (
                "risk".to_owned(),
                RestrictedExpression::new_string(risk_name(risk).to_owned()),
            ),
            (
                "risk_level".to_owned(),
                RestrictedExpression::new_long(risk_level(risk)),
            ),
            (
                "arguments".to_owned(),
                RestrictedExpression::new_entity_uid(arguments_uid),
            ),
        ];
        if let Some(user) = &subject.user {
            let uid =
                EntityUid::from_type_name_and_id(self.types.user.clone(), EntityId::new(user));
            entities.push(Entity::new_no_attrs(uid.clone(), Default::default()));
            context.push(("user".to_owned(), RestrictedExpression::new_entity_uid(uid)));
        }
        if let Some(room) = &subject.room {
            let uid =
                EntityUid::from_type_name_and_id(self.types.room.clone(), EntityId::new(room));
            entities.push(Entity::new_no_attrs(uid.clone(), Default::default()));
            context.push(("room".to_owned(), RestrictedExpression::new_entity_uid(uid)));
        }
        if let Some(session) = &subject.session {
            context.push((
                "session".to_owned(),
                RestrictedExpression::new_string(session.clone()),
            ));
        }
        let context = Context::from_pairs(context).ok()?;
        let cedar_request = CedarRequest::new(
            agent_uid,
            slice.action_uid.clone(),
            resource_uid,
            context,
            None,
        )
        .ok()?;
        let entities = Entities::from_entities(entities, None).ok()?;
        Some((cedar_request, entities))
    }
}

impl CedarOutcome {
    /// Combines the answers of two disjoint policy sets: an error wins, then a forbid, then a
    /// permit; among equals the smaller policy id names the rule.
    fn merge(self, other: CedarOutcome) -> CedarOutcome {
        use CedarOutcome::{Error, Forbid, NoDecision, NoPolicies, Permit};
        match (self, other) {
            (Error(a), Error(b)) => Error(a.into_iter().chain(b).min()),
            (Error(a), _) | (_, Error(a)) => Error(a),
            (Forbid(a), Forbid(b)) => Forbid(a.min(b)),
            (Forbid(a), _) | (_, Forbid(a)) => Forbid(a),
            (Permit(a), Permit(b)) => Permit(a.min(b)),
            (Permit(a), _) | (_, Permit(a)) => Permit(a),
            (NoDecision | NoPolicies, NoDecision | NoPolicies) => NoDecision,
        }
    }
}

impl EntityTypes {
    fn new() -> Result<Self, Vec<PolicyLoadError>> {
        let mut resources = HashMap::new();
        for (_, resource_type) in actions() {
            resources.insert(resource_type, type_name(resource_type)?);
        }
        Ok(Self {
            agent: type_name("Agent")?,
            user: type_name("User")?,
            room: type_name("Room")?,
            upstream: type_name("Upstream")?,
            arguments: type_name("Arguments")?,
            resources,
        })
    }
}

fn type_name(name: &str) -> Result<EntityTypeName, Vec<PolicyLoadError>> {
    EntityTypeName::from_str(&format!("{NAMESPACE}::{name}"))
        .map_err(|error| vec![PolicyLoadError::CedarSchema(CedarDiagnostic::new(&error))])
}

fn action_uid(action: &str) -> Result<EntityUid, Vec<PolicyLoadError>> {
    let action_type = type_name("Action")?;
    Ok(EntityUid::from_type_name_and_id(
        action_type,
        EntityId::new(action),
    ))
}

/// The rule id of a policy: its `@id("...")` annotation, else `<source name>#<n>` (n counting
/// from 0 in the source).
fn policy_rule_id(source_name: &str, policy: &Policy) -> String {
    if let Some(id) = policy.annotation("id") {
        return id.to_owned();
    }
    let raw = policy.id().to_string();
    let number = raw.strip_prefix("policy").unwrap_or(&raw);
    format!("{source_name}#{number}")
}

/// The top-level arguments as Cedar tags; `None` (a policy error) past the limits.
fn argument_tags(arguments: &serde_json::Value) -> Option<Vec<(String, RestrictedExpression)>> {
    let Some(object) = arguments.as_object() else {
        return Some(Vec::new());
    };
    if object.len() > MAX_CEDAR_ARGUMENTS {
        return None;
    }
    let mut res = Vec::with_capacity(object.len());
    for (name, value) in object {
        let rendered = match value {
            serde_json::Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        if rendered.len() > MAX_CEDAR_ARGUMENT_BYTES {
            return None;
        }
        res.push((name.clone(), RestrictedExpression::new_string(rendered)));
    }
    Some(res)
}

pub(crate) fn risk_name(risk: RiskTier) -> &'static str {
    match risk {
        RiskTier::Low => "low",
        RiskTier::Medium => "medium",
        RiskTier::High => "high",
        RiskTier::Critical => "critical",
    }
}

fn risk_level(risk: RiskTier) -> i64 {
    match risk {
        RiskTier::Low => 0,
        RiskTier::Medium => 1,
        RiskTier::High => 2,
        RiskTier::Critical => 3,
    }
}

#[cfg(test)]
mod tests;
