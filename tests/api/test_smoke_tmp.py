def test_submit(owner):
    response = owner.submit()
    print(response.status_code, response.json())
    assert response.status_code == 201
    job_id = response.json()["id"]
    r = owner.client.get(f"/api/v1/jobs/{job_id}")
    print(r.json())
    r = owner.client.get("/api/v1/jobs")
    print(r.json())
    r = owner.client.get(f"/api/v1/jobs/{job_id}/events")
    print(r.json())
    assert 0
