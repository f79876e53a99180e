"""Checks FakeRancher with Rancher's own schema-driven Python client (rancher-client-python-3p,
module `rancher`, the gdapi-style client of Rancher's integration tests): discovery through
/v3 and X-Api-Schemas, listing and reading clusters, projects and role templates, creating a
user, its global role binding and a cluster and a project role template binding, listing them
back filtered by userId, an update, an action, deleting them all, and the errors of a missing
object and of a wrong token.

Phase "create" prints one JSON line with the ids it created; phase "delete" removes them."""
import json

from common import args, expect_raises, require

a = args()
(rancher,) = require(("rancher", "rancher-client-python-3p==0.2.0"))


def client(token):
    return rancher.Client(url=a["url"], token=token, verify=a["ca"])


def ids(collection):
    assert collection.type == "collection", collection
    return sorted(item.id for item in collection)


c = client(a["token"])

# The client built its methods from /v3/schemas: only what the schemas allow.
for method in [
    "list_cluster", "by_id_cluster", "list_project", "by_id_project", "list_role_template",
    "by_id_role_template", "create_user", "list_user", "by_id_user", "update_by_id_user",
    "create_global_role_binding", "list_global_role_binding",
    "create_cluster_role_template_binding", "list_cluster_role_template_binding",
    "by_id_cluster_role_template_binding", "create_project_role_template_binding",
    "list_project_role_template_binding", "by_id_project_role_template_binding",
    "list_token", "by_id_token", "list_schema",
]:
    assert callable(getattr(c, method, None)), f"the client has no {method}"
assert not hasattr(c, "create_cluster"), "clusters are not creatable through the fake"
user_schema = c.schema.types["user"]
assert user_schema.pluralName == "users", user_schema
assert "setpassword" in user_schema.resourceActions, user_schema
assert user_schema.resourceFields.password.writeOnly is True, user_schema.resourceFields.password
crtb_schema = c.schema.types["clusterRoleTemplateBinding"]
assert crtb_schema.links.collection == a["url"] + "/clusterroletemplatebindings", crtb_schema.links
assert "eq" in crtb_schema.collectionFilters.userId.modifiers, crtb_schema.collectionFilters

if a["phase"] == "create":
    # Discovery, as the provisioner does it.
    assert ids(c.list_cluster()) == a["clusters"], ids(c.list_cluster())
    cluster = c.by_id_cluster(a["cluster"])
    assert cluster.type == "cluster" and cluster.baseType == "cluster", cluster
    assert cluster.id == a["cluster"] and cluster.name == a["cluster_name"], cluster
    assert cluster.links.self == f"{a['url']}/clusters/{a['cluster']}", cluster.links
    assert "generateKubeconfig" in cluster.actions, cluster.actions
    assert c.by_id_cluster("c-m-nope9") is None
    assert ids(c.list_project()) == a["projects"], ids(c.list_project())
    assert ids(c.list_project(clusterId=a["cluster"])) == a["cluster_projects"]
    # A link, followed as the client follows any link.
    assert ids(cluster.projects()) == a["cluster_projects"]
    project = c.by_id_project(a["project"])
    assert project.clusterId == a["cluster"] and project.type == "project", project

    templates = c.list_role_template()
    assert templates.resourceType == "roleTemplate", templates
    cluster_templates = c.list_role_template(context="cluster")
    assert cluster_templates.filters.context[0].value == "cluster", cluster_templates.filters
    assert {t.context for t in cluster_templates} == {"cluster"}, ids(cluster_templates)
    assert a["cluster_role"] in ids(cluster_templates)
    assert a["project_role"] in ids(c.list_role_template(context="project"))
    assert set(ids(c.list_role_template(locked="true"))) == set(a["locked_roles"])
    role = c.by_id_role_template(a["cluster_role"])
    assert role.context == "cluster" and role.locked is False, role
    assert c.by_id_role_template("no-such-role") is None

    # A user, as the provisioner creates it.
    assert ids(c.list_user(username=a["username"])) == []
    user = c.create_user(
        username=a["username"],
        password=a["password"],
        name=a["name"],
        description="created by the vendor check",
        mustChangePassword=False,
        enabled=True,
        labels=a["labels"],
        annotations=a["annotations"],
    )
    assert user.type == "user" and user.id.startswith("u-"), user
    assert user.username == a["username"] and user.name == a["name"], user
    assert user.mustChangePassword is False and user.enabled is True, user
    assert "password" not in user, "the write-only password came back"
    assert ids(c.list_user(username=a["username"])) == [user.id]
    assert c.by_id_user(user.id).username == a["username"]
    user = c.update(user, description=a["description"])
    assert user.description == a["description"], user
    user.setpassword(newPassword=a["new_password"])

    grb = c.create_global_role_binding(globalRoleId="user-base", userId=user.id)
    assert grb.type == "globalRoleBinding" and grb.globalRoleId == "user-base", grb
    crtb = c.create_cluster_role_template_binding(
        clusterId=a["cluster"],
        roleTemplateId=a["cluster_role"],
        userId=user.id,
        annotations=a["binding_annotations"],
    )
    assert crtb.type == "clusterRoleTemplateBinding", crtb
    assert crtb.id.startswith(a["cluster"] + ":crtb-"), crtb.id
    assert crtb.clusterId == a["cluster"] and crtb.roleTemplateId == a["cluster_role"], crtb
    assert crtb.userId == user.id and crtb.userPrincipalId == f"local://{user.id}", crtb
    prtb = c.create_project_role_template_binding(
        projectId=a["project"],
        roleTemplateId=a["project_role"],
        userId=user.id,
        annotations=a["binding_annotations"],
    )
    assert prtb.type == "projectRoleTemplateBinding", prtb
    assert prtb.projectId == a["project"] and prtb.roleTemplateId == a["project_role"], prtb

    # Listed back, filtered by userId (the filter the provisioner relies on).
    assert ids(c.list_global_role_binding(userId=user.id)) == [grb.id]
    assert ids(c.list_cluster_role_template_binding(userId=user.id)) == [crtb.id]
    assert ids(c.list_project_role_template_binding(userId=user.id)) == [prtb.id]
    assert ids(c.list_cluster_role_template_binding(userId="u-nobody")) == []
    assert ids(cluster.clusterRoleTemplateBindings(userId=user.id)) == [crtb.id]

    # Errors in Norman's shape: a binding to a locked role template is refused.
    e = expect_raises(
        rancher.ApiError,
        lambda: c.create_cluster_role_template_binding(
            clusterId=a["cluster"], roleTemplateId=a["locked_roles"][0], userId=user.id
        ),
        "locked role template",
    )
    assert e.error.type == "error" and e.error.status == 422, e.error

    print(json.dumps({"user": user.id, "grb": grb.id, "crtb": crtb.id, "prtb": prtb.id}))
else:
    user = c.by_id_user(a["user"])
    crtb = c.by_id_cluster_role_template_binding(a["crtb"])
    prtb = c.by_id_project_role_template_binding(a["prtb"])
    grbs = c.list_global_role_binding(userId=a["user"])
    assert crtb.userId == a["user"] and prtb.userId == a["user"], (crtb, prtb)
    assert ids(grbs) == [a["grb"]], ids(grbs)
    for obj in [crtb, prtb, grbs.data[0]]:
        c.delete(obj)
    assert c.by_id_cluster_role_template_binding(a["crtb"]) is None
    assert c.by_id_project_role_template_binding(a["prtb"]) is None
    assert ids(c.list_cluster_role_template_binding(userId=a["user"])) == []
    assert ids(c.list_project_role_template_binding(userId=a["user"])) == []
    assert ids(c.list_global_role_binding(userId=a["user"])) == []
    c.delete(user)
    assert c.by_id_user(a["user"]) is None
    assert ids(c.list_user(username=user.username)) == []
    e = expect_raises(rancher.ApiError, lambda: c.delete(user), "deleting twice")
    assert e.error.status == 404 and e.error.code == "NotFound", e.error

    # The API key itself, as get-status reads it.
    key = c.by_id_token(a["access_key"])
    assert key.type == "token" and key.current is True and key.expired is False, key
    assert "token" not in key, "the key's secret came back"

    # A wrong token: Rancher's authentication filter refuses it before any schema is read.
    e = expect_raises(
        rancher.ApiError, lambda: client(a["access_key"] + ":wrong"), "wrong token"
    )
    assert e.error.type == "error" and e.error.status == "401", e.error
    assert e.error.message == "Unauthorized 401: must authenticate", e.error

print("ok")
