//! `template.yaml` agrees with the schema defined once in `marquee::schema`, and wires every
//! route and binary the workspace has.

use std::collections::BTreeSet;

use marquee::schema::TABLE;
use serde_norway::Value;

fn template() -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yaml");
    serde_norway::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn resources_of_type(template: &Value, kind: &str) -> Vec<Value> {
    template["Resources"]
        .as_mapping()
        .unwrap()
        .values()
        .filter(|r| r["Type"].as_str() == Some(kind))
        .cloned()
        .collect()
}

fn key_schema(value: &Value) -> Vec<(String, bool)> {
    value
        .as_sequence()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["AttributeName"].as_str().unwrap().to_owned(),
                k["KeyType"].as_str().unwrap() == "HASH",
            )
        })
        .collect()
}

fn expected_key(parts: &[marquee::schema::KeyPart; 2]) -> Vec<(String, bool)> {
    parts
        .iter()
        .map(|p| (p.attribute.to_owned(), p.hash))
        .collect()
}

#[test]
fn the_template_table_matches_the_schema_in_code() {
    let tables = resources_of_type(&template(), "AWS::DynamoDB::Table");
    assert_eq!(tables.len(), 1);
    let table = &tables[0]["Properties"];
    assert!(table.get("TableName").is_none(), "no fixed table name");
    assert_eq!(table["BillingMode"].as_str(), Some("PAY_PER_REQUEST"));

    let attributes: BTreeSet<(String, String)> = table["AttributeDefinitions"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["AttributeName"].as_str().unwrap().to_owned(),
                a["AttributeType"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected: BTreeSet<(String, String)> = TABLE
        .string_attributes
        .iter()
        .map(|a| ((*a).to_owned(), "S".to_owned()))
        .collect();
    assert_eq!(attributes, expected);
    assert_eq!(key_schema(&table["KeySchema"]), expected_key(&TABLE.key));

    let indexes = table["GlobalSecondaryIndexes"].as_sequence().unwrap();
    assert_eq!(indexes.len(), TABLE.indexes.len());
    for expected in TABLE.indexes {
        let index = indexes
            .iter()
            .find(|i| i["IndexName"].as_str() == Some(expected.name))
            .unwrap_or_else(|| panic!("index {} missing", expected.name));
        assert_eq!(key_schema(&index["KeySchema"]), expected_key(&expected.key));
        assert_eq!(
            index["Projection"]["ProjectionType"].as_str(),
            Some("INCLUDE")
        );
        let included: Vec<&str> = index["Projection"]["NonKeyAttributes"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(included, expected.include);
    }
    assert_eq!(
        table["TimeToLiveSpecification"]["AttributeName"].as_str(),
        Some(TABLE.ttl_attribute)
    );
    assert_eq!(
        table["TimeToLiveSpecification"]["Enabled"].as_bool(),
        Some(true)
    );
    assert_eq!(
        table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"].as_bool(),
        Some(true)
    );
}

#[test]
fn the_template_routes_every_route_key_and_builds_every_binary() {
    let template = template();
    let routes: BTreeSet<String> = resources_of_type(&template, "AWS::ApiGatewayV2::Route")
        .iter()
        .map(|r| r["Properties"]["RouteKey"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        routes,
        BTreeSet::from(
            [
                "$connect",
                "$disconnect",
                "subscribe",
                "unsubscribe",
                "$default"
            ]
            .map(String::from)
        )
    );
    let binaries: BTreeSet<String> = resources_of_type(&template, "AWS::Serverless::Function")
        .iter()
        .map(|f| {
            assert_eq!(
                f["Metadata"]["BuildMethod"].as_str(),
                Some("rust-cargolambda")
            );
            f["Metadata"]["BuildProperties"]["Binary"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        binaries,
        BTreeSet::from(
            [
                "marquee-connect",
                "marquee-disconnect",
                "marquee-subscribe",
                "marquee-notify"
            ]
            .map(String::from)
        )
    );
}
